"""Posts large bodies that a node must reject early, over HTTP/2 with httpx,
and checks that each rejection arrives whole: the status, the JSON error code
and (for 503) Retry-After. Independent of lpgpu: it only reads a JSON list of
cases that the Rust test wrote.

    python3 early_rejections.py CASES.json

CASES.json: {"url": "https://127.0.0.1:PORT/segment", "cases": [{"name": ...,
"headers": {...}, "body_file": PATH, "status": 401, "code": "bad_auth_type"}]}
Prints one line per case and "early rejections passed" when all pass.
"""

import json
import sys

import httpx


def main():
    spec = json.load(open(sys.argv[1]))
    failures = []
    with httpx.Client(http2=True, verify=False, timeout=20) as client:
        for case in spec["cases"]:
            body = open(case["body_file"], "rb").read()
            try:
                response = client.post(spec["url"], headers=case["headers"], content=body)
            except httpx.HTTPError as error:
                failures.append(f"{case['name']}: no response: {type(error).__name__}: {error}")
                print(f"FAIL {case['name']}: {error!r}")
                continue
            problems = []
            if response.http_version != "HTTP/2":
                problems.append(f"answered over {response.http_version}")
            if response.status_code != case["status"]:
                problems.append(f"status {response.status_code}, expected {case['status']}")
            try:
                code = response.json().get("error")
            except ValueError:
                code = None
            if code != case["code"]:
                problems.append(f"error code {code!r}, expected {case['code']!r}")
            if case["status"] == 503 and not response.headers.get("retry-after"):
                problems.append("503 without Retry-After")
            verdict = "ok" if not problems else "FAIL " + "; ".join(problems)
            print(f"{case['name']}: {response.status_code} {code} ({len(body)} bytes sent): {verdict}")
            if problems:
                failures.append(f"{case['name']}: " + "; ".join(problems))
    if failures:
        print("\n".join(failures))
        sys.exit(1)
    print("early rejections passed")


if __name__ == "__main__":
    main()
