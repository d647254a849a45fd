"""S3 client scenarios against kikaku-edge, run by tests/s3_endpoint.rs.

Real clients (boto3, the AWS CLI) talk to the gateway over HTTPS; where a
client cannot be made to send something (signed aws-chunked bodies, a
skewed clock, a tampered chunk), a small SigV4 signer written here from the
AWS documentation does it, independent of the gateway's own code.

Usage: python3 scenarios.py <scenario>. Environment: KK_ENDPOINT,
AWS_CA_BUNDLE, and KK_{A,B,Q}_{ID,SECRET,BUCKET} for the three tenants.
Exits non-zero (with a traceback) when an assertion fails.
"""

import base64
import concurrent.futures
import datetime
import hashlib
import hmac
import io
import json
import os
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from unittest import mock

import boto3
import botocore
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import ClientError

ENDPOINT = os.environ["KK_ENDPOINT"]
CA = os.environ["AWS_CA_BUNDLE"]
REGION = "us-east-1"
MIB = 1 << 20


def tenant(t):
    return (
        os.environ[f"KK_{t}_ID"],
        os.environ[f"KK_{t}_SECRET"],
        os.environ[f"KK_{t}_BUCKET"],
    )


def client(t, secret=None, endpoint=None, **cfg):
    ak, sk, _ = tenant(t)
    s3cfg = {"addressing_style": "path"}
    s3cfg.update(cfg.pop("s3", {}))
    return boto3.client(
        "s3",
        endpoint_url=endpoint or ENDPOINT,
        aws_access_key_id=ak,
        aws_secret_access_key=secret or sk,
        region_name=REGION,
        verify=CA,
        # SigV4 unless a scenario asks otherwise: botocore presigns with
        # SigV2 by default for custom endpoints (tested on its own).
        config=Config(s3=s3cfg, retries={"max_attempts": 1},
                      signature_version=cfg.pop("signature_version", "s3v4"), **cfg),
    )


def error_code(fn):
    try:
        fn()
    except ClientError as e:
        return e.response["Error"]["Code"]
    raise AssertionError("expected an S3 error, the call succeeded")


def record_payload_modes(c):
    """The x-amz-content-sha256 of every request the client sends."""
    seen = []

    def before_send(request, **_):
        seen.append(request.headers.get("x-amz-content-sha256", b""))

    c.meta.events.register("before-send.s3", before_send)
    return seen


def as_text(v):
    return v.decode() if isinstance(v, bytes) else v


# --- an independent SigV4 signer (AWS docs), for what clients won't send ---

def _hmac(key, msg):
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def signing_key(secret, date):
    k = _hmac(("AWS4" + secret).encode(), date)
    k = _hmac(k, REGION)
    k = _hmac(k, "s3")
    return _hmac(k, "aws4_request")


def quote(s, safe="/"):
    return urllib.parse.quote(s, safe=safe + "-_.~")


def _open(req):
    ctx = ssl.create_default_context(cafile=CA)
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=60) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def raw_request(t, method, path, body=b"", headers=None, payload_hash=None,
                when=None, secret=None, chunked=None, query="", trailer=None,
                region=REGION, unsigned=None, omit_signed=()):
    """Sign and send one request by hand. `chunked`: (chunk size, decoded
    length to declare, tamper index or None) for STREAMING-AWS4-HMAC-SHA256-PAYLOAD;
    with `trailer` (the base64 CRC32 to claim) the -TRAILER variant, the
    checksum and its signature after the last chunk. `unsigned`: headers
    added after signing; `omit_signed`: headers sent but left out of
    SignedHeaders. A value outside Latin-1 goes on the wire as UTF-8.
    Returns (status, body)."""
    ak, sk, _ = tenant(t)
    sk = secret or sk
    u = urllib.parse.urlparse(ENDPOINT)
    host = u.netloc
    when = when or datetime.datetime.now(datetime.timezone.utc)
    amz_date = when.strftime("%Y%m%dT%H%M%SZ")
    date = amz_date[:8]
    scope = f"{date}/{region}/s3/aws4_request"
    headers = dict(headers or {})
    headers.setdefault("content-type", "application/octet-stream")
    headers["host"] = host
    headers["x-amz-date"] = amz_date
    if chunked:
        payload_hash = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
        headers["content-encoding"] = "aws-chunked"
        headers["x-amz-decoded-content-length"] = str(chunked[1])
        if trailer is not None:
            payload_hash += "-TRAILER"
            headers["x-amz-trailer"] = "x-amz-checksum-crc32"
    payload_hash = payload_hash or hashlib.sha256(body).hexdigest()
    headers["x-amz-content-sha256"] = payload_hash
    signed = sorted(h for h in headers if h not in omit_signed)
    canonical_query = "&".join(
        f"{quote(k, '')}={quote(v, '')}"
        for k, v in sorted(urllib.parse.parse_qsl(query, keep_blank_values=True))
    )
    canonical = "\n".join([
        method,
        quote(path),
        canonical_query,
        "".join(f"{h}:{headers[h].strip()}\n" for h in signed),
        ";".join(signed),
        payload_hash,
    ])
    sts = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope,
                     hashlib.sha256(canonical.encode()).hexdigest()])
    key = _hmac(_hmac(_hmac(_hmac(("AWS4" + sk).encode(), date), region), "s3"), "aws4_request")
    seed = hmac.new(key, sts.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={ak}/{scope}, "
        f"SignedHeaders={';'.join(signed)}, Signature={seed}"
    )
    if chunked:
        size, _, tamper = chunked
        out, prev = b"", seed
        pieces = [body[i:i + size] for i in range(0, len(body), size)] + [b""]
        for piece in pieces:
            csts = "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", amz_date, scope, prev,
                              hashlib.sha256(b"").hexdigest(),
                              hashlib.sha256(piece).hexdigest()])
            prev = hmac.new(key, csts.encode(), hashlib.sha256).hexdigest()
            out += f"{len(piece):x};chunk-signature={prev}\r\n".encode() + piece
            out += b"\r\n" if (piece or trailer is None) else b""
        if trailer is not None:
            lines = f"x-amz-checksum-crc32:{trailer}\n"
            tsts = "\n".join(["AWS4-HMAC-SHA256-TRAILER", amz_date, scope, prev,
                              hashlib.sha256(lines.encode()).hexdigest()])
            tsig = hmac.new(key, tsts.encode(), hashlib.sha256).hexdigest()
            out += f"x-amz-checksum-crc32:{trailer}\r\nx-amz-trailer-signature:{tsig}\r\n\r\n".encode()
        if tamper is not None:
            # Flip one byte of data after signing: the chunk no longer matches.
            i = out.index(b"\r\n") + 2 + tamper
            out = out[:i] + bytes([out[i] ^ 1]) + out[i + 1:]
        body = out
    headers["content-length"] = str(len(body))
    headers.update(unsigned or {})
    headers = {k: (v.encode() if any(ord(c) > 255 for c in v) else v) for k, v in headers.items()}
    url = f"{ENDPOINT}{quote(path)}" + (f"?{query}" if query else "")
    return _open(urllib.request.Request(url, data=body if method in ("PUT", "POST") else None,
                                        method=method, headers=headers))


# --- scenarios ---

def basic():
    a = client("A")
    bucket = tenant("A")[2]
    modes = record_payload_modes(a)
    data = os.urandom(3 * MIB + 17)
    a.put_object(Bucket=bucket, Key="docs/one.bin", Body=data)
    # Current SDKs send a CRC32 trailer by default over HTTPS.
    assert as_text(modes[-1]) == "STREAMING-UNSIGNED-PAYLOAD-TRAILER", modes
    got = a.get_object(Bucket=bucket, Key="docs/one.bin")["Body"].read()
    assert got == data
    # Range reads.
    part = a.get_object(Bucket=bucket, Key="docs/one.bin", Range="bytes=10-19")
    assert part["Body"].read() == data[10:20]
    assert part["ContentRange"] == f"bytes 10-19/{len(data)}"
    # Suffix and open-ended ranges, across the embedded backend's 256 KiB reads.
    assert a.get_object(Bucket=bucket, Key="docs/one.bin", Range="bytes=-5")["Body"].read() == data[-5:]
    tail = a.get_object(Bucket=bucket, Key="docs/one.bin", Range="bytes=300000-")
    assert tail["Body"].read() == data[300000:]
    assert tail["ContentLength"] == len(data) - 300000
    head = a.head_object(Bucket=bucket, Key="docs/one.bin")
    assert head["ContentLength"] == len(data)

    # when_required: no checksum trailer; the body is sent as is.
    w = client("A", request_checksum_calculation="when_required")
    wmodes = record_payload_modes(w)
    w.put_object(Bucket=bucket, Key="docs/two.txt", Body=b"two", ContentType="text/plain",
                 Metadata={"origin": "test"})
    assert not as_text(wmodes[-1]).startswith("STREAMING"), wmodes
    h = w.head_object(Bucket=bucket, Key="docs/two.txt")
    assert h["ContentType"] == "text/plain" and h["Metadata"] == {"origin": "test"}, h

    # A signed single-chunk payload (the SHA-256 of the whole body).
    s = client("A", request_checksum_calculation="when_required",
               s3={"payload_signing_enabled": True})
    smodes = record_payload_modes(s)
    s.put_object(Bucket=bucket, Key="docs/three.txt", Body=b"three" * 1000)
    assert len(as_text(smodes[-1])) == 64, smodes
    assert s.get_object(Bucket=bucket, Key="docs/three.txt")["Body"].read() == b"three" * 1000

    listed = a.list_objects_v2(Bucket=bucket, Prefix="docs/")
    assert [o["Key"] for o in listed["Contents"]] == ["docs/one.bin", "docs/three.txt", "docs/two.txt"]
    assert listed["Name"] == bucket
    # Delimiter and pagination.
    top = a.list_objects_v2(Bucket=bucket, Delimiter="/")
    assert [p["Prefix"] for p in top.get("CommonPrefixes", [])] == ["docs/"], top
    page = a.list_objects_v2(Bucket=bucket, Prefix="docs/", MaxKeys=2)
    assert page["IsTruncated"] and len(page["Contents"]) == 2
    rest = a.list_objects_v2(Bucket=bucket, Prefix="docs/", ContinuationToken=page["NextContinuationToken"])
    assert [o["Key"] for o in rest["Contents"]] == ["docs/two.txt"]
    v1 = a.list_objects(Bucket=bucket, Prefix="docs/", MaxKeys=1)
    assert v1["IsTruncated"] and v1["Contents"][0]["Key"] == "docs/one.bin"

    # Buckets: create, list (own only), copy within, delete.
    a.create_bucket(Bucket="scratch-a")
    names = [b["Name"] for b in a.list_buckets()["Buckets"]]
    assert names == sorted([bucket, "scratch-a"]), names
    a.copy_object(Bucket="scratch-a", Key="copy.txt", CopySource={"Bucket": bucket, "Key": "docs/two.txt"})
    assert a.get_object(Bucket="scratch-a", Key="copy.txt")["Body"].read() == b"two"
    a.head_bucket(Bucket="scratch-a")
    assert error_code(lambda: a.delete_bucket(Bucket="scratch-a")) == "BucketNotEmpty"
    res = a.delete_objects(Bucket="scratch-a", Delete={"Objects": [{"Key": "copy.txt"}]})
    assert [d["Key"] for d in res["Deleted"]] == ["copy.txt"]
    a.delete_bucket(Bucket="scratch-a")
    assert error_code(lambda: a.create_bucket(Bucket="portal")) == "InvalidBucketName"

    for k in ["docs/one.bin", "docs/two.txt", "docs/three.txt"]:
        a.delete_object(Bucket=bucket, Key=k)
    assert a.list_objects_v2(Bucket=bucket).get("KeyCount") == 0
    assert error_code(lambda: a.get_object(Bucket=bucket, Key="docs/one.bin")) == "NoSuchKey"


def multipart():
    a = client("A")
    bucket = tenant("A")[2]
    data = os.urandom(64 * MIB)
    cfg = TransferConfig(multipart_threshold=8 * MIB, multipart_chunksize=8 * MIB, max_concurrency=4)
    a.upload_fileobj(io.BytesIO(data), bucket, "big/64mib.bin", Config=cfg)
    head = a.head_object(Bucket=bucket, Key="big/64mib.bin")
    assert head["ContentLength"] == len(data)
    out = io.BytesIO()
    a.download_fileobj(bucket, "big/64mib.bin", out, Config=cfg)
    assert hashlib.sha256(out.getvalue()).digest() == hashlib.sha256(data).digest()

    # The low-level calls: create, upload, list parts, list uploads, abort.
    up = a.create_multipart_upload(Bucket=bucket, Key="big/aborted.bin")
    assert up["Bucket"] == bucket, up
    a.upload_part(Bucket=bucket, Key="big/aborted.bin", UploadId=up["UploadId"], PartNumber=1, Body=os.urandom(5 * MIB))
    parts = a.list_parts(Bucket=bucket, Key="big/aborted.bin", UploadId=up["UploadId"])
    assert [p["PartNumber"] for p in parts["Parts"]] == [1]
    uploads = a.list_multipart_uploads(Bucket=bucket)
    assert [u["Key"] for u in uploads.get("Uploads", [])] == ["big/aborted.bin"], uploads
    a.abort_multipart_upload(Bucket=bucket, Key="big/aborted.bin", UploadId=up["UploadId"])
    assert not a.list_multipart_uploads(Bucket=bucket).get("Uploads")
    a.delete_object(Bucket=bucket, Key="big/64mib.bin")


def presigned():
    a, b = client("A"), client("B")
    ba, bb = tenant("A")[2], tenant("B")[2]
    ctx = ssl.create_default_context(cafile=CA)

    put_url = a.generate_presigned_url("put_object", Params={"Bucket": ba, "Key": "p/up.txt"}, ExpiresIn=300)
    # An explicit type: urllib would say form-urlencoded, which moto's server
    # parses as a form instead of storing the bytes.
    req = urllib.request.Request(put_url, data=b"presigned body", method="PUT",
                                 headers={"Content-Type": "application/octet-stream"})
    with urllib.request.urlopen(req, context=ctx) as r:
        assert r.status == 200
    get_url = a.generate_presigned_url("get_object", Params={"Bucket": ba, "Key": "p/up.txt"}, ExpiresIn=300)
    with urllib.request.urlopen(get_url, context=ctx) as r:
        assert r.read() == b"presigned body"

    # SigV2 (botocore's default for presigning against a custom endpoint,
    # e.g. a client built as seed 000 prints it) works, query and header form.
    v2 = boto3.client("s3", endpoint_url=ENDPOINT, aws_access_key_id=tenant("A")[0],
                      aws_secret_access_key=tenant("A")[1], region_name=REGION, verify=CA,
                      config=Config(s3={"addressing_style": "path"}))
    v2_url = v2.generate_presigned_url("get_object", Params={"Bucket": ba, "Key": "p/up.txt"}, ExpiresIn=300)
    assert "AWSAccessKeyId=" in v2_url and "X-Amz-Algorithm" not in v2_url, v2_url
    with urllib.request.urlopen(v2_url, context=ctx) as r:
        assert r.read() == b"presigned body"
    # Tampered (another key) or past its Expires: refused.
    for bad in (v2_url.replace("p/up.txt", "p/other.txt"),
                v2.generate_presigned_url("get_object", Params={"Bucket": ba, "Key": "p/up.txt"}, ExpiresIn=-5)):
        try:
            urllib.request.urlopen(bad, context=ctx)
            raise AssertionError("a bad SigV2 URL worked")
        except urllib.error.HTTPError as e:
            assert e.code == 403, e.code
    # The header form (`Authorization: AWS id:sig`): boto3's "s3" signer.
    h2 = client("A", signature_version="s3")
    h2.put_object(Bucket=ba, Key="p/v2.txt", Body=b"v2 header", Metadata={"who": "v2"})
    got = h2.get_object(Bucket=ba, Key="p/v2.txt")
    assert got["Body"].read() == b"v2 header" and got["Metadata"] == {"who": "v2"}
    assert [o["Key"] for o in h2.list_objects(Bucket=ba, Prefix="p/v2")["Contents"]] == ["p/v2.txt"]
    assert error_code(lambda: client("A", secret="wrong-secret", signature_version="s3")
                      .get_object(Bucket=ba, Key="p/v2.txt")) == "SignatureDoesNotMatch"
    h2.delete_object(Bucket=ba, Key="p/v2.txt")

    # Expired.
    short = a.generate_presigned_url("get_object", Params={"Bucket": ba, "Key": "p/up.txt"}, ExpiresIn=1)
    time.sleep(2)
    try:
        urllib.request.urlopen(short, context=ctx)
        raise AssertionError("an expired URL worked")
    except urllib.error.HTTPError as e:
        assert e.code == 403 and b"<Code>AccessDenied</Code>" in e.read()

    # Tampered: the URL for one key used for another.
    try:
        urllib.request.urlopen(get_url.replace("p/up.txt", "p/other.txt"), context=ctx)
        raise AssertionError("a tampered URL worked")
    except urllib.error.HTTPError as e:
        assert e.code == 403 and b"SignatureDoesNotMatch" in e.read()

    # A's URL for B's bucket reaches nothing of B's.
    b.put_object(Bucket=bb, Key="secret.txt", Body=b"B's secret")
    for method, op in [("GET", "get_object"), ("PUT", "put_object")]:
        url = a.generate_presigned_url(op, Params={"Bucket": bb, "Key": "secret.txt"}, ExpiresIn=300)
        req = urllib.request.Request(url, data=b"overwrite" if method == "PUT" else None, method=method)
        try:
            urllib.request.urlopen(req, context=ctx)
            raise AssertionError(f"A's presigned {method} reached B's bucket")
        except urllib.error.HTTPError as e:
            assert e.code == 403, e.code
    assert b.get_object(Bucket=bb, Key="secret.txt")["Body"].read() == b"B's secret"


def signing_rules():
    """Every x-amz header is signed; the credential names our region; what
    the gateway cannot honour (SSE, ACLs, object lock) is refused, not
    dropped; unsigned and `//` requests get S3 XML errors."""
    bucket = tenant("A")[2]
    a = client("A")
    a.put_object(Bucket=bucket, Key="sr/source.txt", Body=b"the source")
    missing = lambda k: error_code(lambda: a.head_object(Bucket=bucket, Key=k)) == "404"

    # A presigned PUT (V4, and V2 as the seed's client makes it) cannot be
    # turned into a copy or given metadata or a redirect its signer never saw.
    v2 = boto3.client("s3", endpoint_url=ENDPOINT, aws_access_key_id=tenant("A")[0],
                      aws_secret_access_key=tenant("A")[1], region_name=REGION, verify=CA)
    for c, code in ((a, b"AccessDenied"), (v2, b"SignatureDoesNotMatch")):
        # (urllib would send a form Content-Type, which V2 signs: name one.)
        url = c.generate_presigned_url("put_object", ExpiresIn=300, Params={
            "Bucket": bucket, "Key": "sr/target.txt", "ContentType": "text/plain"})
        plain = {"Content-Type": "text/plain"}
        for extra in ({"x-amz-copy-source": f"/{bucket}/sr/source.txt"},
                      {"x-amz-meta-approved": "no"},
                      {"x-amz-website-redirect-location": "/elsewhere"}):
            status, body = _open(urllib.request.Request(url, data=b"plain body", method="PUT",
                                                        headers={**plain, **extra}))
            assert status == 403 and code in body, (extra, status, body)
            assert missing("sr/target.txt"), extra
        if c is a:
            assert b"not signed" in body, body
        # The same URL as signed works.
        status, body = _open(urllib.request.Request(url, data=b"plain body", method="PUT", headers=plain))
        assert status == 200, (status, body)
        assert a.get_object(Bucket=bucket, Key="sr/target.txt")["Body"].read() == b"plain body"
        a.delete_object(Bucket=bucket, Key="sr/target.txt")

    # Header auth: an unsigned x-amz-meta, a scope for another region, and
    # SignedHeaders without host are refused; nothing is stored.
    status, body = raw_request("A", "PUT", f"/{bucket}/sr/h1.txt", body=b"x", unsigned={"x-amz-meta-sneaky": "1"})
    assert status == 403 and b"AccessDenied" in body and b"x-amz-meta-sneaky" in body, (status, body)
    status, body = raw_request("A", "PUT", f"/{bucket}/sr/h2.txt", body=b"x", region="eu-west-1")
    assert status == 400 and b"AuthorizationHeaderMalformed" in body and b"us-east-1" in body, (status, body)
    status, body = raw_request("A", "PUT", f"/{bucket}/sr/h3.txt", body=b"x", omit_signed=("host",))
    assert status == 400 and b"host" in body, (status, body)
    assert all(missing(k) for k in ("sr/h1.txt", "sr/h2.txt", "sr/h3.txt"))

    # Dated by `Date` instead of X-Amz-Date (botocore does so when the caller
    # sets a Date header), and metadata beyond ASCII: both verify.
    from email.utils import formatdate
    dated = client("A")
    dated.meta.events.register("before-sign.s3.PutObject",
                               lambda request, **_: request.headers.__setitem__("Date", formatdate(usegmt=True)))
    sent = []
    dated.meta.events.register("before-send.s3.PutObject", lambda request, **_: sent.append(dict(request.headers)))
    dated.put_object(Bucket=bucket, Key="sr/dated.txt", Body=b"dated")
    assert "X-Amz-Date" not in sent[0] and "Date" in sent[0], sent
    assert a.get_object(Bucket=bucket, Key="sr/dated.txt")["Body"].read() == b"dated"
    # (botocore refuses non-ASCII metadata itself; the signer here sends
    # Latin-1 text as http.client does, and anything else as UTF-8.)
    for key, value in (("sr/latin1.txt", "Hello World\xe9"), ("sr/utf8.txt", "\u65e5\u672c\u8a9e")):
        status, body = raw_request("A", "PUT", f"/{bucket}/{key}", body=b"m",
                                   headers={"x-amz-meta-meta1": value})
        assert status == 200, (key, status, body)
        assert a.head_object(Bucket=bucket, Key=key)["ContentLength"] == 1

    # What the gateway cannot honour is refused, and nothing is stored.
    for kw in ({"SSECustomerAlgorithm": "AES256", "SSECustomerKey": "k" * 32},
               {"ServerSideEncryption": "AES256"},
               {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "alias/x"},
               {"ACL": "public-read"},
               {"ObjectLockMode": "GOVERNANCE", "ObjectLockRetainUntilDate": datetime.datetime(2030, 1, 1)}):
        assert error_code(lambda: a.put_object(Bucket=bucket, Key="sr/sse.txt", Body=b"secret", **kw)) == "NotImplemented", kw
        assert missing("sr/sse.txt"), kw
    a.put_object(Bucket=bucket, Key="sr/private.txt", Body=b"p", ACL="private")
    assert error_code(lambda: a.get_object(Bucket=bucket, Key="sr/private.txt",
                                           SSECustomerAlgorithm="AES256", SSECustomerKey="k" * 32)) == "NotImplemented"

    # Unsigned requests in the S3 namespace, and `//` paths: S3 XML 403s.
    for status, body in (_open(urllib.request.Request(f"{ENDPOINT}/{bucket}/sr/source.txt")),
                         raw_request("A", "GET", "//sr/source.txt")):
        assert status == 403 and body.startswith(b"<?xml") and b"<Code>AccessDenied</Code>" in body, (status, body)
    # Too many headers: 431 with a body that says so.
    many = {f"x-filler-{i}": "v" for i in range(150)}
    status, body = _open(urllib.request.Request(f"{ENDPOINT}/{bucket}/sr/source.txt", headers=many))
    assert status == 431 and b"headers" in body, (status, body)


def open_upload():
    """Leave a multipart upload open in A's bucket: part 1 of 5 MiB, part 2
    of 1 MiB. Prints its upload id."""
    a, bucket = client("A"), tenant("A")[2]
    up = a.create_multipart_upload(Bucket=bucket, Key="mpu/open.bin")
    for n, size in ((1, 5 * MIB), (2, MIB)):
        a.upload_part(Bucket=bucket, Key="mpu/open.bin", UploadId=up["UploadId"], PartNumber=n,
                      Body=bytes([n]) * size)
    print(f"upload {up['UploadId']}")


def refusals():
    bucket = tenant("A")[2]
    a = client("A")
    # Wrong secret: refused, nothing stored.
    bad = client("A", secret="not-the-secret-at-all-0000")
    assert error_code(lambda: bad.put_object(Bucket=bucket, Key="r/wrong.txt", Body=b"x")) == "SignatureDoesNotMatch"
    assert error_code(lambda: a.head_object(Bucket=bucket, Key="r/wrong.txt")) == "404"
    # Unknown access key id.
    unknown = boto3.client("s3", endpoint_url=ENDPOINT, aws_access_key_id="NOSUCHACCESSKEY00000",
                           aws_secret_access_key="x" * 40, region_name=REGION, verify=CA,
                           config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))
    assert error_code(lambda: unknown.list_buckets()) == "InvalidAccessKeyId"

    # A clock 20 minutes off: refused, nothing stored.
    skewed = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=20)
    status, body = raw_request("A", "PUT", f"/{bucket}/r/skewed.txt", body=b"late", when=skewed)
    assert status == 403 and b"RequestTimeTooSkewed" in body, (status, body)
    # ... and the same request on time is accepted (the signer is right).
    status, body = raw_request("A", "PUT", f"/{bucket}/r/ontime.txt", body=b"on time")
    assert status == 200, (status, body)
    assert a.get_object(Bucket=bucket, Key="r/ontime.txt")["Body"].read() == b"on time"
    assert error_code(lambda: a.head_object(Bucket=bucket, Key="r/skewed.txt")) == "404"

    # A body that does not match its signed SHA-256.
    status, body = raw_request("A", "PUT", f"/{bucket}/r/mismatch.txt", body=b"actual",
                               payload_hash=hashlib.sha256(b"claimed").hexdigest())
    assert status == 400 and b"XAmzContentSHA256Mismatch" in body, (status, body)
    assert error_code(lambda: a.head_object(Bucket=bucket, Key="r/mismatch.txt")) == "404"

    # Signed aws-chunked: good, tampered, and lying about its length.
    data = os.urandom(200_000)
    status, body = raw_request("A", "PUT", f"/{bucket}/r/chunked.bin", body=data, chunked=(65536, len(data), None))
    assert status == 200, (status, body)
    assert a.get_object(Bucket=bucket, Key="r/chunked.bin")["Body"].read() == data
    status, body = raw_request("A", "PUT", f"/{bucket}/r/tampered.bin", body=data, chunked=(65536, len(data), 70000))
    assert status == 403 and b"SignatureDoesNotMatch" in body, (status, body)
    assert error_code(lambda: a.head_object(Bucket=bucket, Key="r/tampered.bin")) == "404"
    status, body = raw_request("A", "PUT", f"/{bucket}/r/liar.bin", body=data, chunked=(65536, 1000, None))
    assert status == 400 and b"IncompleteBody" in body, (status, body)
    assert error_code(lambda: a.head_object(Bucket=bucket, Key="r/liar.bin")) == "404"

    # Signed aws-chunked with a trailing CRC32 and trailer signature.
    import base64, zlib
    crc = base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()
    status, body = raw_request("A", "PUT", f"/{bucket}/r/trailer.bin", body=data,
                               chunked=(65536, len(data), None), trailer=crc)
    assert status == 200, (status, body)
    assert a.get_object(Bucket=bucket, Key="r/trailer.bin")["Body"].read() == data
    wrong = base64.b64encode((zlib.crc32(data) ^ 1).to_bytes(4, "big")).decode()
    status, body = raw_request("A", "PUT", f"/{bucket}/r/badcrc.bin", body=data,
                               chunked=(65536, len(data), None), trailer=wrong)
    assert status == 400 and b"BadDigest" in body, (status, body)
    assert error_code(lambda: a.head_object(Bucket=bucket, Key="r/badcrc.bin")) == "404"
    a.delete_object(Bucket=bucket, Key="r/trailer.bin")

    # Unsupported operations are refused, not forwarded.
    assert error_code(lambda: a.get_bucket_acl(Bucket=bucket)) == "NotImplemented"
    for k in ["r/ontime.txt", "r/chunked.bin"]:
        a.delete_object(Bucket=bucket, Key=k)


def isolation():
    a, b = client("A"), client("B")
    ba, bb = tenant("A")[2], tenant("B")[2]
    a.put_object(Bucket=ba, Key="mine.txt", Body=b"A's data")
    # B sees only its own buckets.
    assert [x["Name"] for x in b.list_buckets()["Buckets"]] == [bb]
    denied = [
        lambda: b.get_object(Bucket=ba, Key="mine.txt"),
        lambda: b.head_bucket(Bucket=ba),
        lambda: b.list_objects_v2(Bucket=ba),
        lambda: b.list_objects(Bucket=ba),
        lambda: b.put_object(Bucket=ba, Key="mine.txt", Body=b"B was here"),
        lambda: b.delete_object(Bucket=ba, Key="mine.txt"),
        lambda: b.delete_objects(Bucket=ba, Delete={"Objects": [{"Key": "mine.txt"}]}),
        lambda: b.copy_object(Bucket=bb, Key="stolen.txt", CopySource={"Bucket": ba, "Key": "mine.txt"}),
        lambda: b.create_multipart_upload(Bucket=ba, Key="mine.txt"),
        lambda: b.list_multipart_uploads(Bucket=ba),
    ]
    for i, call in enumerate(denied):
        code = error_code(call)
        assert code in ("AccessDenied", "403"), (i, code)
    # The backend's own name for A's bucket means nothing to B (or to A).
    for c in (a, b):
        assert error_code(lambda: c.list_objects_v2(Bucket="kk-" + "0" * 12 + "-" + ba)) in ("AccessDenied", "InvalidBucketName")

    # Path tricks, sent raw so no client normalises them.
    tricks = [
        f"/{bb}/../{ba}/mine.txt",
        f"/{bb}/%2E%2E/{ba}/mine.txt",
        f"/{bb}/..%2F{ba}%2Fmine.txt",
        f"/{bb}%2F..%2F{ba}/mine.txt",
        f"/{ba}%2Fmine.txt",
        f"/{bb}/./x",
    ]
    for path in tricks:
        status, body = raw_get_path("B", path)
        assert status in (400, 403), (path, status, body)
    # A's object is untouched, and nothing was written for B.
    assert a.get_object(Bucket=ba, Key="mine.txt")["Body"].read() == b"A's data"
    assert b.list_objects_v2(Bucket=bb).get("KeyCount", 0) == 0 or all(
        o["Key"] != "stolen.txt" for o in b.list_objects_v2(Bucket=bb).get("Contents", []))
    a.delete_object(Bucket=ba, Key="mine.txt")


def raw_get_path(t, raw_path):
    """GET a path exactly as written (percent-escapes and dots kept), signed
    the way a client that did not normalise would sign it."""
    ak, sk, _ = tenant(t)
    u = urllib.parse.urlparse(ENDPOINT)
    now = datetime.datetime.now(datetime.timezone.utc)
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    scope = f"{amz_date[:8]}/{REGION}/s3/aws4_request"
    empty = hashlib.sha256(b"").hexdigest()
    canonical_path = quote(urllib.parse.unquote(raw_path))
    canonical = f"GET\n{canonical_path}\n\nhost:{u.netloc}\nx-amz-content-sha256:{empty}\nx-amz-date:{amz_date}\n\nhost;x-amz-content-sha256;x-amz-date\n{empty}"
    sts = f"AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    sig = hmac.new(signing_key(sk, amz_date[:8]), sts.encode(), hashlib.sha256).hexdigest()
    import http.client
    conn = http.client.HTTPSConnection(u.hostname, u.port, context=ssl.create_default_context(cafile=CA))
    conn.putrequest("GET", raw_path, skip_accept_encoding=True)
    conn.putheader("x-amz-date", amz_date)
    conn.putheader("x-amz-content-sha256", empty)
    conn.putheader("authorization", f"AWS4-HMAC-SHA256 Credential={ak}/{scope}, SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature={sig}")
    conn.endheaders()
    r = conn.getresponse()
    return r.status, r.read()


def quota():
    """50 concurrent 1 MiB uploads against 10 MiB of quota, spread over every
    gateway in KK_ENDPOINTS (several instances sharing one state)."""
    endpoints = os.environ.get("KK_ENDPOINTS", ENDPOINT).split(",")
    clients = [client("Q", endpoint=e, max_pool_connections=50) for e in endpoints]
    q = clients[0]
    bucket = tenant("Q")[2]
    body = os.urandom(MIB)

    def put(i):
        try:
            clients[i % len(clients)].put_object(Bucket=bucket, Key=f"race/{i:02}", Body=body)
            return "ok"
        except ClientError as e:
            return e.response["Error"]["Code"]

    with concurrent.futures.ThreadPoolExecutor(50) as pool:
        results = list(pool.map(put, range(50)))
    ok = results.count("ok")
    assert set(results) <= {"ok", "QuotaExceeded"}, results
    listed = q.list_objects_v2(Bucket=bucket, Prefix="race/").get("Contents", [])
    stored = sum(o["Size"] for o in listed)
    assert stored <= 10 * MIB, stored
    assert stored == ok * MIB, (stored, ok)
    # The ledger agrees with the backend, on every gateway.
    ctx = ssl.create_default_context(cafile=CA)
    for e in endpoints:
        req = urllib.request.Request(f"{e}/s3/usage", headers={"Authorization": f"Bearer {os.environ['KK_Q_KEY']}"})
        with urllib.request.urlopen(req, context=ctx) as r:
            usage = json.load(r)
        assert usage["used"] == stored and usage["reserved"] == 0, (usage, stored)
    # aws-chunked bodies that lie about their length cannot get around it.
    data = os.urandom(3 * MIB)
    status, resp = raw_request("Q", "PUT", f"/{bucket}/race/liar", body=data, chunked=(65536, 1024, None))
    assert status in (400, 403), (status, resp)
    assert error_code(lambda: q.head_object(Bucket=bucket, Key="race/liar")) == "404"
    print(json.dumps({"ok": ok, "stored": stored}))


def cli():
    ak, sk, bucket = tenant("A")
    env = dict(os.environ, AWS_ACCESS_KEY_ID=ak, AWS_SECRET_ACCESS_KEY=sk, AWS_DEFAULT_REGION=REGION)
    base = ["aws", "--endpoint-url", ENDPOINT, "--ca-bundle", CA]

    def aws(*args, check=True):
        r = subprocess.run(base + list(args), env=env, capture_output=True, text=True, timeout=300)
        if check and r.returncode != 0:
            raise AssertionError(f"aws {' '.join(args)} failed: {r.stderr}")
        return r

    import tempfile
    with tempfile.TemporaryDirectory() as d:
        src = os.path.join(d, "src.bin")
        data = os.urandom(20 * MIB + 5)
        with open(src, "wb") as f:
            f.write(data)
        aws("s3", "cp", src, f"s3://{bucket}/cli/src.bin")
        listing = aws("s3", "ls", f"s3://{bucket}/cli/").stdout
        assert "src.bin" in listing and str(len(data)) in listing, listing
        dst = os.path.join(d, "dst.bin")
        aws("s3", "cp", f"s3://{bucket}/cli/src.bin", dst)
        assert open(dst, "rb").read() == data
        small = os.path.join(d, "small.txt")
        open(small, "w").write("small")
        aws("s3api", "put-object", "--bucket", bucket, "--key", "cli/small.txt", "--body", small)
        out = json.loads(aws("s3api", "head-object", "--bucket", bucket, "--key", "cli/small.txt").stdout)
        assert out["ContentLength"] == 5
        aws("s3", "rm", f"s3://{bucket}/cli/", "--recursive")
        assert aws("s3", "ls", f"s3://{bucket}/cli/", check=False).stdout.strip() == ""
        # A wrong secret is refused by the CLI too.
        bad = dict(env, AWS_SECRET_ACCESS_KEY="wrong" * 8)
        r = subprocess.run(base + ["s3", "ls", f"s3://{bucket}/"], env=bad, capture_output=True, text=True)
        assert r.returncode != 0 and "SignatureDoesNotMatch" in r.stderr, r.stderr


class Pattern(io.RawIOBase):
    """`size` bytes of a repeating pattern, never all in memory."""

    def __init__(self, size):
        self.left = size
        self.block = bytes(range(256)) * 4096

    def readable(self):
        return True

    def readinto(self, b):
        n = min(len(b), self.left, len(self.block))
        b[:n] = self.block[:n]
        self.left -= n
        return n


def stream_1gib():
    a = client("A")
    bucket = tenant("A")[2]
    size = 1 << 30
    cfg = TransferConfig(multipart_threshold=size + 1)  # one PutObject, streamed
    a.upload_fileobj(Pattern(size), bucket, "huge.bin", Config=cfg)
    assert a.head_object(Bucket=bucket, Key="huge.bin")["ContentLength"] == size
    body = a.get_object(Bucket=bucket, Key="huge.bin")["Body"]
    n = 0
    for chunk in body.iter_chunks(1 << 20):
        n += len(chunk)
    assert n == size, n
    a.delete_object(Bucket=bucket, Key="huge.bin")


def overwrite_race():
    """Reads racing overwrites of one key: every read is one whole version
    with that version's length and ETag, never a mix (the embedded backend
    reads the file itself and must notice a file swapped under it, and
    s3s-fs renames a new file in before it saves the new ETag)."""
    a = client("A", max_pool_connections=8)
    bucket = tenant("A")[2]
    versions = {c: bytes([c]) * (MIB + c * 4099) for c in b"abc"}
    a.put_object(Bucket=bucket, Key="race.bin", Body=versions[ord("a")])
    stop = time.time() + 4

    def writer():
        n = 0
        while time.time() < stop:
            c = b"abc"[n % 3]
            a.put_object(Bucket=bucket, Key="race.bin", Body=versions[c])
            n += 1
        return n

    def reader():
        seen = 0
        while time.time() < stop:
            r = a.get_object(Bucket=bucket, Key="race.bin")
            body = r["Body"].read()
            headers = r["ResponseMetadata"]["HTTPHeaders"]
            assert body, ("empty body", r["ResponseMetadata"]["HTTPStatusCode"], headers)
            c = body[0]
            assert body == versions[c], (len(body), set(body), headers)
            assert r["ContentLength"] == len(body)
            assert r["ETag"].strip('"') == hashlib.md5(body).hexdigest(), (r["ETag"], chr(c))
            seen += 1
        return seen

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        w = pool.submit(writer)
        reads = [pool.submit(reader) for _ in range(3)]
        writes, reads = w.result(), sum(f.result() for f in reads)
    assert writes > 10 and reads > 10, (writes, reads)
    print(json.dumps({"writes": writes, "reads": reads}))


def bad_digest():
    """A PUT whose body does not match its Content-MD5 is refused with
    BadDigest and leaves the object as it was."""
    a = client("A")
    bucket = tenant("A")[2]
    a.put_object(Bucket=bucket, Key="digest.bin", Body=b"first version")
    wrong = base64.b64encode(hashlib.md5(b"something else").digest()).decode()
    try:
        a.put_object(Bucket=bucket, Key="digest.bin", Body=b"second version", ContentMD5=wrong)
        raise AssertionError("a wrong Content-MD5 was accepted")
    except ClientError as e:
        assert e.response["Error"]["Code"] == "BadDigest", e.response
    got = a.get_object(Bucket=bucket, Key="digest.bin")
    assert got["Body"].read() == b"first version"
    assert got["ETag"].strip('"') == hashlib.md5(b"first version").hexdigest(), got["ETag"]


def stored_key():
    """Tenant S: a key created by `kikaku-edge keys` a moment ago."""
    c = client("S")
    bucket = tenant("S")[2]
    c.put_object(Bucket=bucket, Key="hello.txt", Body=b"stored key")
    assert c.get_object(Bucket=bucket, Key="hello.txt")["Body"].read() == b"stored key"
    assert [b["Name"] for b in c.list_buckets()["Buckets"]] == [bucket]


def suspended_soon():
    """Poll as tenant S: say `ready` once a call works, then print when calls
    start failing (the test suspends the key after `ready`)."""
    c = client("S")
    c.list_buckets()
    print("ready", flush=True)
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            c.list_buckets()
        except ClientError as e:
            assert e.response["Error"]["Code"] == "AccessDenied", e.response
            print(json.dumps({"refused_at": time.time()}))
            return
        time.sleep(0.02)
    raise AssertionError("still accepted 5 s after the suspension")


def http2_64mib():
    """A 64 MiB PUT and GET over HTTP/2 (ALPN h2) by two h2 clients, curl
    --http2 and httpx with h2, on URLs boto3 presigns; boto3 (HTTP/1.1)
    reads back what each wrote."""
    import httpx

    a = client("A")
    bucket = tenant("A")[2]
    size = 64 * MIB
    data = bytes(range(256)) * (size // 256)
    digest = hashlib.sha256(data).hexdigest()
    path = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"kk-h2-{os.getpid()}.bin")
    with open(path, "wb") as f:
        f.write(data)
    try:
        for via in ("curl", "httpx"):
            key = f"h2/{via}.bin"
            put = a.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=300)
            get = a.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=300)
            t0 = time.time()
            if via == "curl":
                base = ["curl", "-sS", "--fail", "--http2", "--cacert", CA, "-w", "%{http_version}"]
                r = subprocess.run(base + ["-o", "/dev/null", "-T", path, put], capture_output=True, text=True)
                assert r.returncode == 0 and r.stdout == "2", (r.stdout, r.stderr)
                t1 = time.time()
                r = subprocess.run(base + ["-o", path + ".got", get], capture_output=True, text=True)
                assert r.returncode == 0 and r.stdout == "2", (r.stdout, r.stderr)
                with open(path + ".got", "rb") as f:
                    got = hashlib.sha256(f.read()).hexdigest()
                os.remove(path + ".got")
            else:
                with httpx.Client(http2=True, verify=CA, timeout=120) as h:
                    # In 1 MiB pieces: httpcore slices a bytes body after
                    # each flow-control window (a copy of the rest each
                    # time), 65 s for one 64 MiB piece.
                    pieces = (data[i:i + MIB] for i in range(0, size, MIB))
                    r = h.put(put, content=pieces, headers={"content-length": str(size)})
                    assert r.status_code == 200 and r.http_version == "HTTP/2", (r.status_code, r.http_version, r.text)
                    t1 = time.time()
                    h2sum = hashlib.sha256()
                    with h.stream("GET", get) as r:
                        assert r.status_code == 200 and r.http_version == "HTTP/2", (r.status_code, r.http_version)
                        for chunk in r.iter_bytes():
                            h2sum.update(chunk)
                    got = h2sum.hexdigest()
            assert got == digest, via
            t2 = time.time()
            # What the h2 client stored is whole, read by boto3 over HTTP/1.1.
            body = a.get_object(Bucket=bucket, Key=key)["Body"].read()
            assert len(body) == size and hashlib.sha256(body).hexdigest() == digest, via
            a.delete_object(Bucket=bucket, Key=key)
            print(json.dumps({"client": via, "bytes": size, "protocol": "HTTP/2",
                              "put_s": round(t1 - t0, 2), "get_s": round(t2 - t1, 2)}))
    finally:
        os.remove(path)


if __name__ == "__main__":
    globals()[sys.argv[1]]()
    print(f"scenario {sys.argv[1]}: ok")
