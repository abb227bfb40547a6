"""Writes, from `terraform show -json` of the applied deployment, what the IAM contract test
(crates/cca/tests/iam.rs) checks the code's DynamoDB requests against: the sessions table (its
ARN, key and indexes), the conversations bucket (its ARN) and the statements of every role's inline policies, by role name without
the deployment's prefix (`agent-task`, `preview-task`, `proxy-task`, `webhook`, …).

    terraform show -json | python3 policies.py OUT.json
"""

import json
import sys


def resources(module):
    yield from module.get("resources", [])
    for child in module.get("child_modules", []):
        yield from resources(child)


def main():
    out_path = sys.argv[1]
    found = list(resources(json.load(sys.stdin)["values"]["root_module"]))
    tables = [r["values"] for r in found if r["type"] == "aws_dynamodb_table"]
    if len(tables) != 1:
        sys.exit(f"expected one DynamoDB table in the state, found {len(tables)}")
    table = tables[0]
    keys = [k for k in (table.get("hash_key"), table.get("range_key")) if k]
    indexes = {
        index["name"]: [k for k in (index.get("hash_key"), index.get("range_key")) if k]
        for index in table.get("global_secondary_index", []) + table.get("local_secondary_index", [])
    }
    # The table is `<prefix>-sessions` (dynamodb.tf), the roles `<prefix>-<role>` (iam.tf).
    prefix = table["name"].removesuffix("sessions")
    roles = {}
    for r in found:
        if r["type"] != "aws_iam_role_policy":
            continue
        role = r["values"]["role"]
        statements = json.loads(r["values"]["policy"]).get("Statement", [])
        if not isinstance(statements, list):
            statements = [statements]
        name = role[len(prefix):] if role.startswith(prefix) else role
        roles.setdefault(name, []).extend(statements)
    buckets = [r["values"] for r in found if r["type"] == "aws_s3_bucket"]
    conversations = [b for b in buckets if "conversations" in b["bucket"]]
    if len(conversations) != 1:
        sys.exit(f"expected one conversations bucket in the state, found {len(conversations)}")
    with open(out_path, "w") as f:
        json.dump(
            {
                "table": {"arn": table["arn"], "keys": keys, "indexes": indexes},
                "conversations": {"arn": conversations[0]["arn"]},
                "roles": roles,
            },
            f,
            indent=2,
        )
    print(f"policies of {', '.join(sorted(roles))} written to {out_path}")


if __name__ == "__main__":
    main()
