"""Schemathesis hooks of the API checks (loaded through SCHEMATHESIS_HOOKS).

An `Idempotency-Key` is one request's: the same key with another request is
refused (422), a rule no schema can state. Generated requests reuse generated
values, so just before each call every valid key is made unique; an invalid one
(a negative test) is left as it is, to be refused with 400.
"""

import re
import uuid

import schemathesis

VALID_KEY = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]{0,253}[\x21-\x7e])?")


@schemathesis.hook
def before_call(context, case, kwargs):
    headers = case.headers
    if headers:
        key = headers.get("Idempotency-Key")
        if isinstance(key, str) and VALID_KEY.fullmatch(key):
            headers["Idempotency-Key"] = uuid.uuid4().hex
