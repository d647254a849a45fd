"""moto's S3 server, as the storage tests start it: `python3 -m moto.server`
with one race of moto's own fixed first.

moto 5.2.1 computes an object's ETag (`FakeKey.etag`, on the first GET, HEAD
or PUT answer that names it) by seeking and reading the object's shared
buffer without the lock that `FakeKey.value` takes. A GET reading the value
at that moment can find the buffer's position moved to the end and answer
200 with a short or empty body (Flask then sets Content-Length to what it
got). That is moto's bug, not the gateway's: it broke the overwrite-race
scenario in CI. Here the ETag is computed under the same lock.
"""

import sys

from moto.s3.models import FakeKey
from moto.server import main

_etag = FakeKey.etag.fget


def _locked_etag(self):
    if self._etag is None:
        with self.lock:
            return _etag(self)
    return _etag(self)


FakeKey.etag = property(_locked_etag)

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
