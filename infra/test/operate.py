#!/usr/bin/env python3
"""Do, in the AWS emulator, what an operator does after `terraform apply`, so that `cca doctor`
can check the whole deployment.

Usage: operate.py ENDPOINT_URL OUTPUTS_JSON GITHUB_APP_KEY_PEM

Terraform makes the secrets without values (they are set outside it): this sets each one in the
shape the binaries parse. The emulator runs no ECS task, so no proxy task registers itself with
the target group: this registers one address of the VPC in its place (the emulator reports
registered targets as healthy without probing them).
"""

import ipaddress
import json
import secrets
import sys

import boto3

REGION = "us-east-1"


def main():
    endpoint, outputs_path, key_path = sys.argv[1:4]
    with open(outputs_path, encoding="utf-8") as f:
        env = json.load(f)["doctor_environment"]["value"]
    with open(key_path, encoding="utf-8") as f:
        private_key = f.read()
    session = boto3.session.Session(
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name=REGION,
    )
    sm = session.client("secretsmanager", endpoint_url=endpoint)
    values = {
        "GITHUB_APP_SECRET_ARN": json.dumps(
            {
                "app_id": 4242,
                "private_key": private_key,
                "webhook_secret": secrets.token_hex(20),
                "default_installation_id": 7,
            }
        ),
        "CONTROL_SECRET_ARN": secrets.token_hex(24),
        "JIRA_SECRET_ARN": json.dumps(
            {
                "base_url": "https://example.atlassian.net",
                "email": "agent@example.com",
                "api_token": secrets.token_hex(12),
                "webhook_secret": secrets.token_hex(20),
                "project_mapping": {"AGNTS": "example/app"},
            }
        ),
    }
    for name, value in values.items():
        if name in env:
            sm.put_secret_value(SecretId=env[name], SecretString=value)
            print(f"set the value of {name}")

    elbv2 = session.client("elbv2", endpoint_url=endpoint)
    ec2 = session.client("ec2", endpoint_url=endpoint)
    group = elbv2.describe_target_groups(TargetGroupArns=[env["PROXY_TARGET_GROUP_ARN"]])[
        "TargetGroups"
    ][0]
    subnets = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [group["VpcId"]]}])
    cidr = ipaddress.ip_network(subnets["Subnets"][0]["CidrBlock"])
    address = str(cidr.network_address + 10)
    elbv2.register_targets(
        TargetGroupArn=group["TargetGroupArn"],
        Targets=[{"Id": address, "Port": int(env["PROXY_PORT"])}],
    )
    print(f"registered {address}:{env['PROXY_PORT']} as the proxy task")


if __name__ == "__main__":
    main()
