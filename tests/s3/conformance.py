"""S3 behaviours as AWS documents them, checked through kikaku-edge against
whichever backend is behind it (tests/s3_conformance.rs runs this on the
embedded backend and on moto). Each check is named after the behaviour.

Usage: python3 conformance.py [check,check,...] (default: all). Same
environment as scenarios.py. Prints one line per passing check; exits
non-zero with a traceback on the first failure.
"""

import concurrent.futures
import datetime
import json
import os
import ssl
import sys
import urllib.request

from botocore.exceptions import ClientError

from scenarios import ENDPOINT, CA, client, error_code, raw_request, tenant

A = "A"


def bucket():
    return tenant(A)[2]


def backend_deviates(what):
    """True (and says so) where the backend behind the gateway is known to
    differ from S3 in a way the gateway cannot correct; the check then
    skips that assertion. Only moto's are listed."""
    known = {
        "moto": {"v1 max-keys does not count common prefixes",
                 "GET partNumber of a multipart object answers the whole object"},
    }.get(os.environ.get("KK_BACKEND", ""), set())
    if what in known:
        print(f"note: {os.environ['KK_BACKEND']} deviates from S3: {what}")
        return True
    return False


def status_of(fn):
    try:
        fn()
    except ClientError as e:
        return e.response["ResponseMetadata"]["HTTPStatusCode"]
    return 200


def usage(t=A):
    """/s3/usage of the tenant's key: what the ledger holds."""
    req = urllib.request.Request(f"{ENDPOINT}/s3/usage",
                                 headers={"Authorization": f"Bearer {os.environ[f'KK_{t}_KEY']}"})
    with urllib.request.urlopen(req, context=ssl.create_default_context(cafile=CA)) as r:
        return json.load(r)


def stored_bytes(c, b):
    total, token = 0, None
    while True:
        kw = {"ContinuationToken": token} if token else {}
        page = c.list_objects_v2(Bucket=b, **kw)
        total += sum(o["Size"] for o in page.get("Contents", []))
        if not page.get("IsTruncated"):
            return total
        token = page["NextContinuationToken"]


def conditional_get_and_head_answer_412_and_304():
    """GetObject/HeadObject: If-Match and If-Unmodified-Since failing → 412,
    If-None-Match matching or If-Modified-Since not passed → 304; RFC 9110
    precedence (If-Match true outranks If-Unmodified-Since false)."""
    c, b = client(A), bucket()
    put = c.put_object(Bucket=b, Key="cond/x.txt", Body=b"conditional")
    etag = put["ETag"]
    lm = c.head_object(Bucket=b, Key="cond/x.txt")["LastModified"]
    before, after = lm - datetime.timedelta(hours=1), lm + datetime.timedelta(hours=1)
    for op in (c.get_object, c.head_object):
        call = lambda **kw: status_of(lambda: op(Bucket=b, Key="cond/x.txt", **kw))
        assert call(IfMatch=etag) == 200, op
        assert call(IfMatch='"0123456789abcdef0123456789abcdef"') == 412, op
        assert call(IfNoneMatch=etag) == 304, op
        assert call(IfNoneMatch='"0123456789abcdef0123456789abcdef"') == 200, op
        assert call(IfModifiedSince=after) == 304, op
        assert call(IfModifiedSince=before) == 200, op
        assert call(IfUnmodifiedSince=before) == 412, op
        assert call(IfUnmodifiedSince=after) == 200, op
        assert call(IfMatch=etag, IfUnmodifiedSince=before) == 200, op
        assert call(IfNoneMatch=etag, IfModifiedSince=before) == 304, op


def suffix_range_longer_than_the_object_is_the_whole_object():
    """Range: bytes=-11 on a 10-byte object returns all 10 bytes (RFC 9110
    §14.1.2), not an error."""
    c, b = client(A), bucket()
    c.put_object(Bucket=b, Key="range/ten.bin", Body=b"0123456789")
    got = c.get_object(Bucket=b, Key="range/ten.bin", Range="bytes=-11")
    assert got["Body"].read() == b"0123456789"
    assert got["ContentLength"] == 10
    got = c.get_object(Bucket=b, Key="range/ten.bin", Range="bytes=-3")
    assert got["Body"].read() == b"789" and got["ContentRange"] == "bytes 7-9/10", got


def recreating_your_own_bucket_is_bucket_already_owned_by_you():
    """CreateBucket on a bucket the caller owns → 409 BucketAlreadyOwnedByYou."""
    c = client(A)
    c.create_bucket(Bucket="conf-mine")
    assert error_code(lambda: c.create_bucket(Bucket="conf-mine")) == "BucketAlreadyOwnedByYou"
    c.delete_bucket(Bucket="conf-mine")


def delete_objects_takes_at_most_1000_keys():
    """DeleteObjects with 1001 keys → 400 MalformedXML, nothing deleted."""
    c, b = client(A), bucket()
    c.put_object(Bucket=b, Key="many/keep.txt", Body=b"k")
    keys = [{"Key": "many/keep.txt"}] + [{"Key": f"many/{i}"} for i in range(1000)]
    assert error_code(lambda: c.delete_objects(Bucket=b, Delete={"Objects": keys})) == "MalformedXML"
    assert c.get_object(Bucket=b, Key="many/keep.txt")["Body"].read() == b"k"
    done = c.delete_objects(Bucket=b, Delete={"Objects": keys[:1000]})
    assert any(d["Key"] == "many/keep.txt" for d in done.get("Deleted", [])), done


def copy_onto_itself_needs_a_change():
    """CopyObject of an object onto itself without changing its metadata →
    400 InvalidRequest; with MetadataDirective REPLACE it is allowed."""
    c, b = client(A), bucket()
    c.put_object(Bucket=b, Key="self/x.txt", Body=b"self", Metadata={"v": "1"})
    src = {"Bucket": b, "Key": "self/x.txt"}
    assert error_code(lambda: c.copy_object(Bucket=b, Key="self/x.txt", CopySource=src)) == "InvalidRequest"
    c.copy_object(Bucket=b, Key="self/x.txt", CopySource=src, MetadataDirective="REPLACE", Metadata={"v": "2"})
    got = c.get_object(Bucket=b, Key="self/x.txt")
    assert got["Body"].read() == b"self" and got["Metadata"] == {"v": "2"}, got["Metadata"]


def copy_is_charged_the_bytes_it_wrote():
    """15 rounds of CopyObject racing an overwrite of its source (sizes
    differ each time): the ledger always ends equal to the bytes stored."""
    c, b = client(A), bucket()
    base_used = usage()["used"] - stored_bytes(c, b)
    assert base_used == 0, f"ledger and backend differ before the race by {base_used}"
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        for i in range(15):
            small, large = b"s" * (1000 + i), b"L" * (300_000 + 7 * i)
            first, second = (small, large) if i % 2 else (large, small)
            c.put_object(Bucket=b, Key="race/src.bin", Body=first)
            copy = pool.submit(c.copy_object, Bucket=b, Key="race/dst.bin",
                               CopySource={"Bucket": b, "Key": "race/src.bin"})
            over = pool.submit(c.put_object, Bucket=b, Key="race/src.bin", Body=second)
            copy.result(), over.result()
            u = usage()
            assert u["reserved"] == 0, u
            assert u["used"] == stored_bytes(c, b), (i, u, stored_bytes(c, b))


MIB = 1 << 20


def _upload(c, b, key, sizes, **create):
    up = c.create_multipart_upload(Bucket=b, Key=key, **create)
    parts = []
    for n, size in enumerate(sizes, 1):
        body = bytes([n]) * size
        r = c.upload_part(Bucket=b, Key=key, UploadId=up["UploadId"], PartNumber=n, Body=body)
        parts.append({"PartNumber": n, "ETag": r["ETag"]})
    return up["UploadId"], parts


def _listed_uploads(c, b):
    return [u["UploadId"] for u in c.list_multipart_uploads(Bucket=b).get("Uploads", [])]


def failed_completions_leave_the_upload_listable_and_abortable():
    """CompleteMultipartUpload refused for a wrong part ETag (InvalidPart), a
    descending list (InvalidPartOrder) or a small middle part
    (EntityTooSmall) changes nothing: the upload is still listed, can then
    be aborted, and its parts' bytes return to the quota."""
    c, b = client(A), bucket()
    uid, parts = _upload(c, b, "mp/fail.bin", [5 * MIB, 1 * MIB, 1000])
    complete = lambda ps: c.complete_multipart_upload(Bucket=b, Key="mp/fail.bin", UploadId=uid,
                                                      MultipartUpload={"Parts": ps})
    wrong = [dict(parts[0], ETag='"00000000000000000000000000000000"')]
    for ps, want in ((wrong, "InvalidPart"), ([parts[1], parts[0]], "InvalidPartOrder"), (parts, "EntityTooSmall")):
        got = error_code(lambda: complete(ps))
        assert got == want, (want, got, c.list_parts(Bucket=b, Key="mp/fail.bin", UploadId=uid).get("Parts"))
    assert error_code(lambda: c.head_object(Bucket=b, Key="mp/fail.bin")) == "404"
    assert uid in _listed_uploads(c, b)
    assert usage()["used"] - stored_bytes(c, b) == 6 * MIB + 1000
    c.abort_multipart_upload(Bucket=b, Key="mp/fail.bin", UploadId=uid)
    assert uid not in _listed_uploads(c, b)
    assert usage()["used"] == stored_bytes(c, b), usage()
    assert error_code(lambda: c.abort_multipart_upload(Bucket=b, Key="mp/fail.bin", UploadId=uid)) == "NoSuchUpload"


def completing_a_subset_of_parts_frees_the_others():
    """Completing with parts 1 and 3 of 3 makes the object of those two; the
    bytes of part 2 leave the quota; completing again is NoSuchUpload."""
    c, b = client(A), bucket()
    uid, parts = _upload(c, b, "mp/subset.bin", [5 * MIB, 5 * MIB, 2000])
    c.complete_multipart_upload(Bucket=b, Key="mp/subset.bin", UploadId=uid,
                                MultipartUpload={"Parts": [parts[0], parts[2]]})
    body = c.get_object(Bucket=b, Key="mp/subset.bin")["Body"].read()
    assert body == bytes([1]) * (5 * MIB) + bytes([3]) * 2000
    assert usage()["used"] == stored_bytes(c, b), (usage(), stored_bytes(c, b))
    assert error_code(lambda: c.complete_multipart_upload(
        Bucket=b, Key="mp/subset.bin", UploadId=uid,
        MultipartUpload={"Parts": [parts[0], parts[2]]})) == "NoSuchUpload"
    c.delete_object(Bucket=b, Key="mp/subset.bin")


def multipart_checksums_are_the_new_objects():
    """CreateMultipartUpload echoes ChecksumAlgorithm; an object overwritten
    by a multipart upload does not keep the old object's CRC32 (boto3's
    checksum-validating GET succeeds); HEAD sends checksums only with
    x-amz-checksum-mode: ENABLED."""
    c, b = client(A), bucket()
    # The checksum as a header (not an aws-chunked trailer, which the
    # gateway checks itself and does not pass on).
    import base64, zlib
    crc = base64.b64encode(zlib.crc32(b"old object").to_bytes(4, "big")).decode()
    status, body = raw_request(A, "PUT", f"/{b}/mp/crc.bin", body=b"old object", headers={
        "x-amz-checksum-crc32": crc, "x-amz-sdk-checksum-algorithm": "CRC32"})
    assert status == 200, (status, body)
    head = c.head_object(Bucket=b, Key="mp/crc.bin", ChecksumMode="ENABLED")
    assert "ChecksumCRC32" in head, head
    assert "ChecksumCRC32" not in c.head_object(Bucket=b, Key="mp/crc.bin")
    up = c.create_multipart_upload(Bucket=b, Key="mp/crc.bin", ChecksumAlgorithm="CRC32")
    assert up.get("ChecksumAlgorithm") == "CRC32", up
    c.abort_multipart_upload(Bucket=b, Key="mp/crc.bin", UploadId=up["UploadId"])
    uid, parts = _upload(c, b, "mp/crc.bin", [5 * MIB, 10])
    c.complete_multipart_upload(Bucket=b, Key="mp/crc.bin", UploadId=uid, MultipartUpload={"Parts": parts})
    got = c.get_object(Bucket=b, Key="mp/crc.bin", ChecksumMode="ENABLED")
    assert got["Body"].read() == bytes([1]) * (5 * MIB) + bytes([2]) * 10
    assert got.get("ChecksumCRC32") != head["ChecksumCRC32"], got
    c.delete_object(Bucket=b, Key="mp/crc.bin")


def listing_keys_round_trip_with_encoding_type_url():
    """ListObjects/V2 with encoding-type=url (botocore asks for it and
    decodes with unquote_plus) lists `asdf+b`, `c%ab` and `a b` by their
    names, so each can be deleted by the name it was listed under."""
    c, b = client(A), bucket()
    odd = ["enc/asdf+b", "enc/c%ab", "enc/a b", "enc/\u65e5\u672c"]
    for k in odd:
        c.put_object(Bucket=b, Key=k, Body=b"x")
    v2 = [o["Key"] for o in c.list_objects_v2(Bucket=b, Prefix="enc/")["Contents"]]
    v1 = [o["Key"] for o in c.list_objects(Bucket=b, Prefix="enc/")["Contents"]]
    assert v2 == v1 == sorted(odd, key=lambda k: k.encode()), (v2, v1)
    for k in v2:
        c.delete_object(Bucket=b, Key=k)
    assert c.list_objects_v2(Bucket=b, Prefix="enc/").get("KeyCount") == 0


def listing_prefix_marker_delimiter_owner_as_s3():
    """Prefix `/` matches only keys that start with `/` (none here: the
    gateway refuses empty key segments); ListObjects echoes
    Marker and sends NextMarker with a delimiter; an empty Delimiter is not
    echoed; Owner comes with ListObjects and with ListObjectsV2 only when
    FetchOwner is set."""
    c, b = client(A), bucket()
    for k in ("lst/a", "lst/b/1", "lst/b/2", "lst/c"):
        c.put_object(Bucket=b, Key=k, Body=b"x")
    assert c.list_objects_v2(Bucket=b, Prefix="/")["KeyCount"] == 0
    page = c.list_objects(Bucket=b, Prefix="lst/", Marker="lst/a", Delimiter="/")
    assert page["Marker"] == "lst/a" and not page["IsTruncated"], page
    assert page.get("CommonPrefixes") == [{"Prefix": "lst/b/"}], page
    assert [o["Key"] for o in page["Contents"]] == ["lst/c"], page
    if not backend_deviates("v1 max-keys does not count common prefixes"):
        page = c.list_objects(Bucket=b, Prefix="lst/", Marker="lst/a", Delimiter="/", MaxKeys=1)
        assert page["IsTruncated"] and page.get("CommonPrefixes") == [{"Prefix": "lst/b/"}], page
        assert "Contents" not in page and page["NextMarker"] == "lst/b/", page
        rest = c.list_objects(Bucket=b, Prefix="lst/", Marker=page["NextMarker"], Delimiter="/")
        assert [o["Key"] for o in rest["Contents"]] == ["lst/c"], rest
    plain = c.list_objects_v2(Bucket=b, Prefix="lst/", Delimiter="")
    assert "Delimiter" not in plain and plain["KeyCount"] == 4, plain
    assert all("Owner" not in o for o in plain["Contents"])
    owned = c.list_objects_v2(Bucket=b, Prefix="lst/", FetchOwner=True)["Contents"]
    assert all(o.get("Owner", {}).get("ID") for o in owned), owned
    assert all(o.get("Owner", {}).get("ID") for o in c.list_objects(Bucket=b, Prefix="lst/")["Contents"])
    for k in ("lst/a", "lst/b/1", "lst/b/2", "lst/c"):
        c.delete_object(Bucket=b, Key=k)


def list_buckets_honours_max_buckets():
    """ListBuckets with MaxBuckets pages by ContinuationToken."""
    c = client(A)
    for n in ("mb-1", "mb-2", "mb-3"):
        c.create_bucket(Bucket=n)
    names, token = [], None
    while True:
        kw = {"ContinuationToken": token} if token else {}
        page = c.list_buckets(MaxBuckets=2, **kw)
        assert len(page["Buckets"]) <= 2, page
        names += [x["Name"] for x in page["Buckets"]]
        token = page.get("ContinuationToken")
        if not token:
            break
    assert {"mb-1", "mb-2", "mb-3"} <= set(names) and len(names) == len(set(names)), names
    for n in ("mb-1", "mb-2", "mb-3"):
        c.delete_bucket(Bucket=n)


def a_key_may_be_the_directory_of_another():
    """`foo/bar` and `foo/bar/xyzzy` both exist; a key ending in `/` holds
    bytes; dots are just characters. (Keys with a `.` or `..` segment, or an
    empty one, are refused by the gateway on every backend: some backends
    and proxies normalise such paths into another bucket.)"""
    c, b = client(A), bucket()
    keys = {"dir/foo/bar": b"file", "dir/foo/bar/xyzzy": b"under it", "dir/folder/": b"slash",
            "dir/a..b/.c": b"dots"}
    assert status_of(lambda: c.put_object(Bucket=b, Key="dir/a/../b", Body=b"x")) == 400
    for k, v in keys.items():
        c.put_object(Bucket=b, Key=k, Body=v)
    for k, v in keys.items():
        assert c.get_object(Bucket=b, Key=k)["Body"].read() == v, k
    listed = [o["Key"] for o in c.list_objects_v2(Bucket=b, Prefix="dir/")["Contents"]]
    assert listed == sorted(keys, key=lambda k: k.encode()), listed
    for k in keys:
        c.delete_object(Bucket=b, Key=k)


def get_and_head_by_part_number():
    """GET/HEAD ?partNumber=N of a multipart object answer part N with
    PartsCount; a plain object is part 1 of 1; a part past the last is 416
    InvalidPartNumber."""
    c, b = client(A), bucket()
    uid, parts = _upload(c, b, "pn/multi.bin", [5 * MIB, 1234])
    c.complete_multipart_upload(Bucket=b, Key="pn/multi.bin", UploadId=uid, MultipartUpload={"Parts": parts})
    if not backend_deviates("GET partNumber of a multipart object answers the whole object"):
        second = c.get_object(Bucket=b, Key="pn/multi.bin", PartNumber=2)
        assert second["Body"].read() == bytes([2]) * 1234 and second.get("PartsCount") == 2, second
        head = c.head_object(Bucket=b, Key="pn/multi.bin", PartNumber=1)
        assert head["ContentLength"] == 5 * MIB and head.get("PartsCount") == 2, head
        assert status_of(lambda: c.get_object(Bucket=b, Key="pn/multi.bin", PartNumber=3)) == 416
    c.put_object(Bucket=b, Key="pn/multi.bin", Body=b"now plain")
    plain = c.get_object(Bucket=b, Key="pn/multi.bin", PartNumber=1)
    assert plain["Body"].read() == b"now plain" and "PartsCount" not in plain, plain
    assert status_of(lambda: c.head_object(Bucket=b, Key="pn/multi.bin", PartNumber=2)) == 416
    c.delete_object(Bucket=b, Key="pn/multi.bin")


CHECKS = [
    conditional_get_and_head_answer_412_and_304,
    suffix_range_longer_than_the_object_is_the_whole_object,
    recreating_your_own_bucket_is_bucket_already_owned_by_you,
    delete_objects_takes_at_most_1000_keys,
    copy_onto_itself_needs_a_change,
    copy_is_charged_the_bytes_it_wrote,
    failed_completions_leave_the_upload_listable_and_abortable,
    completing_a_subset_of_parts_frees_the_others,
    multipart_checksums_are_the_new_objects,
    listing_keys_round_trip_with_encoding_type_url,
    listing_prefix_marker_delimiter_owner_as_s3,
    list_buckets_honours_max_buckets,
    a_key_may_be_the_directory_of_another,
    get_and_head_by_part_number,
]

if __name__ == "__main__":
    wanted = [n for n in (sys.argv[1] if len(sys.argv) > 1 else "").split(",") if n]
    for check in CHECKS:
        if not wanted or check.__name__ in wanted:
            check()
            print(f"ok: {check.__name__}", flush=True)
