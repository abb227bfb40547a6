"""Checks, on `terraform show -json` of the applied deployment, that no session task role
(agent, preview) may read the GitHub App secret or the control key: sessions get their
installation tokens from the webhook's token broker and their session token from the
launcher, so neither secret is anywhere a session's code could reach.

    terraform show -json | python3 session_secrets.py            # exit 1 naming what grants it
    terraform show -json | python3 session_secrets.py --doctored # also proves the check fails
                                                                 # on a policy that grants it
"""

import json
import sys


def resources(module):
    yield from module.get("resources", [])
    for child in module.get("child_modules", []):
        yield from resources(child)


def statements(policy_text):
    statements = json.loads(policy_text).get("Statement", [])
    return statements if isinstance(statements, list) else [statements]


def listed(value):
    return value if isinstance(value, list) else [value]


def grants(statement, secret_arn):
    if statement.get("Effect") != "Allow":
        return False
    actions = listed(statement.get("Action", []))
    reads = any(a in ("secretsmanager:GetSecretValue", "secretsmanager:*", "*") for a in actions)
    covered = any(
        r == "*" or r == secret_arn or (r.endswith("*") and secret_arn.startswith(r[:-1]))
        for r in listed(statement.get("Resource", []))
    )
    return reads and covered


def problems(state):
    found = list(resources(state["values"]["root_module"]))
    secrets = {
        r["address"]: r["values"]["arn"]
        for r in found
        if r["type"] == "aws_secretsmanager_secret"
    }
    guarded = {a: arn for a, arn in secrets.items() if "github" in a or "control" in a}
    if not guarded:
        return ["no GitHub App or control secret found in the state"]
    session_policies = [
        r
        for r in found
        if r["type"] == "aws_iam_role_policy"
        and r["name"] == "task"
        and r.get("index") in ("agent", "preview")
    ]
    if len(session_policies) != 2:
        return [f"expected the agent's and the preview's task policies, found {len(session_policies)}"]
    out = []
    for policy in session_policies:
        for statement in statements(policy["values"]["policy"]):
            for address, arn in guarded.items():
                if grants(statement, arn):
                    out.append(
                        f"{policy['address']} statement {statement.get('Sid', '?')} lets the "
                        f"{policy['index']} task read {address}"
                    )
    return out


def main():
    state = json.load(sys.stdin)
    found = problems(state)
    for p in found:
        print(f"FAIL {p}")
    if found:
        sys.exit(1)
    print("ok: no session task role may read the GitHub App secret or the control key")
    if "--doctored" in sys.argv:
        # The same state with the agent's policy granting the App secret must fail.
        for r in resources(state["values"]["root_module"]):
            if r["type"] == "aws_iam_role_policy" and r["name"] == "task" and r.get("index") == "agent":
                policy = json.loads(r["values"]["policy"])
                app = next(
                    x["values"]["arn"]
                    for x in resources(state["values"]["root_module"])
                    if x["type"] == "aws_secretsmanager_secret" and "github" in x["address"]
                )
                policy["Statement"].append(
                    {"Sid": "Doctored", "Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": app}
                )
                r["values"]["policy"] = json.dumps(policy)
        if not problems(state):
            print("FAIL the check does not notice a policy that grants the App secret")
            sys.exit(1)
        print("ok: a doctored policy granting the App secret is found")


if __name__ == "__main__":
    main()
