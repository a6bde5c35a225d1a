"""The API checks of scripts/test, against a running Leadline.

    python checks.py BASE_URL ADMIN_KEY WORK_DIR

1. validates /openapi.json with openapi-spec-validator (an independent validator);
2. runs schemathesis with all its checks over every operation (a secret key for
   /v1, the admin key for /admin, a fixed seed, a bounded number of cases): a
   schema-valid request may be refused only by a rule the operation lists in
   `x-leadline-rules`, with that rule's status;
3. generates a Python client with openapi-python-client and makes a round trip with
   it: create a tenant, add a yacht, capture a lead, list it, move it, price a quote.

Exits non-zero on any failure.
"""

import json
import os
import subprocess
import sys
import urllib.request

BASE, ADMIN_KEY, WORK = sys.argv[1], sys.argv[2], sys.argv[3]
VENV_BIN = os.path.dirname(sys.executable)
SEED = os.environ.get("LEADLINE_API_SEED", "1")
EXAMPLES = os.environ.get("LEADLINE_API_EXAMPLES", "20")
POSITIVE_DEFAULT = ["2xx", "3xx", "401", "403", "404", "409", "429"]


def step(title):
    print(f"-- {title}", flush=True)


def call(method, path, body=None, headers=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(BASE + path, data=data, method=method)
    req.add_header("X-Admin-Key", ADMIN_KEY)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    with urllib.request.urlopen(req) as r:
        return json.load(r)


def fetch_document():
    path = os.path.join(WORK, "openapi.json")
    with urllib.request.urlopen(BASE + "/openapi.json") as r:
        doc = json.load(r)
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)
    return doc, path


def validate(path):
    step("openapi-spec-validator")
    subprocess.run([os.path.join(VENV_BIN, "openapi-spec-validator"), path], check=True)


def toml_str(s):
    return json.dumps(s)


def schemathesis_config(doc, secret_key):
    """The keys of the document's security schemes, and one [[operations]] table per
    operation with rules: their statuses are expected answers to schema-valid
    requests there."""
    lines = [
        "# Written by tests/api/checks.py from the document's x-leadline-rules.",
        "[warnings]",
        "enabled = false",
        "",
        "# Keys by security scheme, so that schemathesis knows which header each",
        "# operation needs (and can test a request without it).",
        "[auth.openapi.admin_key]",
        f"api_key = {toml_str(ADMIN_KEY)}",
        "[auth.openapi.secret_key]",
        f"bearer = {toml_str(secret_key)}",
        "",
        "# DELETE /v1/yachts/{id} archives: the yacht stays readable at its address",
        "# (with `archived_at`), since its bookings and quotes name it. The Rust tests",
        "# hold the other deletes (leads, webhook endpoints) to 404 afterwards.",
        "[checks.use_after_free]",
        "enabled = false",
        "",
    ]
    for path, item in doc["paths"].items():
        for method, op in item.items():
            rules = op.get("x-leadline-rules") or []
            extra = sorted({str(r["status"]) for r in rules} - set(POSITIVE_DEFAULT))
            if not extra:
                continue
            statuses = ", ".join(toml_str(s) for s in POSITIVE_DEFAULT + extra)
            lines += [
                "[[operations]]",
                # One name, "METHOD /path": include-path and include-method would
                # each match on their own.
                f"include-name = {toml_str(method.upper() + ' ' + path)}",
                f"checks.positive_data_acceptance.expected-statuses = [{statuses}]",
            ]
            server_errors = [s for s in extra if s.startswith("5")]
            if server_errors:
                listed = ", ".join(toml_str(s) for s in ["2xx", "3xx", "4xx"] + server_errors)
                lines.append(f"checks.not_a_server_error.expected-statuses = [{listed}]")
            lines.append("")
    path = os.path.join(WORK, "schemathesis.toml")
    with open(path, "w") as f:
        f.write("\n".join(lines))
    return path


def run_schemathesis(doc, secret_key):
    step(f"schemathesis (seed {SEED}, {EXAMPLES} examples per operation)")
    config = schemathesis_config(doc, secret_key)
    cmd = [
        os.path.join(VENV_BIN, "schemathesis"),
        "--config-file", config,
        "run", BASE + "/openapi.json",
        "--checks", "all",
        "--seed", SEED,
        "--max-examples", EXAMPLES,
        "--no-color",
    ]
    # In WORK, so that its caches (.schemathesis, .hypothesis) stay out of the tree.
    env = dict(os.environ, SCHEMATHESIS_HOOKS="hooks", PYTHONPATH=os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=WORK, env=env)
    report = os.path.join(WORK, "schemathesis.txt")
    with open(report, "w") as f:
        f.write(out.stdout + out.stderr)
    tail = (out.stdout + out.stderr).strip().splitlines()[-12:]
    print("\n".join(tail))
    if out.returncode != 0:
        print(f"schemathesis failed; the whole report is in {report}", file=sys.stderr)
        print((out.stdout + out.stderr)[-20000:], file=sys.stderr)
        sys.exit(1)


def round_trip(doc_path):
    step("openapi-python-client: generate a client and make a round trip")
    out_dir = os.path.join(WORK, "client")
    subprocess.run(
        [os.path.join(VENV_BIN, "openapi-python-client"), "generate", "--path", doc_path,
         "--output-path", out_dir, "--overwrite", "--meta", "none"],
        check=True, capture_output=True, text=True,
    )
    env = dict(os.environ, PYTHONPATH=WORK)
    subprocess.run(
        [sys.executable, os.path.join(os.path.dirname(__file__), "roundtrip.py"), BASE, ADMIN_KEY],
        check=True, env=env,
    )


def main():
    os.makedirs(WORK, exist_ok=True)
    doc, path = fetch_document()
    validate(path)
    tenant = call("POST", "/admin/tenants", {"name": "Schemathesis Charters"})
    run_schemathesis(doc, tenant["secret_key"])
    round_trip(path)
    print("API checks passed", flush=True)


if __name__ == "__main__":
    main()
