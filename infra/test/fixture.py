#!/usr/bin/env python3
"""Make, in the AWS emulator, what infra/ expects to exist already, and write its inputs.

Usage: fixture.py ENDPOINT_URL NAME_PREFIX OUT_DIR

An account gives infra/ a VPC, subnets and a load balancer listener; here they are made in the
emulator: a VPC with two public subnets routed to an internet gateway and two private subnets
routed through a NAT gateway (as a Lambda in a VPC needs), an application load balancer with its
own security group, and an HTTP listener whose default action answers 404 (as a shared load
balancer's would). OUT_DIR receives `test.tfvars.json` (every required input of infra/, for
these resources), `subnets.json` (the subnets by name, public-c in a zone the load balancer
does not serve) and `webhook.zip`, a stand-in for the webhook's package (`deploy.sh lambda`
builds the real one; the emulator never runs it).
"""

import json
import os
import sys
import zipfile

import boto3

REGION = "us-east-1"


def main():
    endpoint, prefix, out_dir = sys.argv[1:4]
    session = boto3.session.Session(
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name=REGION,
    )
    ec2 = session.client("ec2", endpoint_url=endpoint)
    elbv2 = session.client("elbv2", endpoint_url=endpoint)

    vpc_id = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    ec2.modify_vpc_attribute(VpcId=vpc_id, EnableDnsHostnames={"Value": True})
    subnets = {}
    for name, cidr, zone in [
        ("public-a", "10.0.1.0/24", "us-east-1a"),
        ("public-b", "10.0.2.0/24", "us-east-1b"),
        ("private-a", "10.0.11.0/24", "us-east-1a"),
        ("private-b", "10.0.12.0/24", "us-east-1b"),
    ]:
        subnet = ec2.create_subnet(VpcId=vpc_id, CidrBlock=cidr, AvailabilityZone=zone)
        subnets[name] = subnet["Subnet"]["SubnetId"]

    # Public subnets route to the internet gateway, private ones through a NAT gateway in a
    # public subnet: the Lambda gets private subnets, the tasks public ones.
    igw = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    ec2.attach_internet_gateway(InternetGatewayId=igw, VpcId=vpc_id)
    public_rt = ec2.create_route_table(VpcId=vpc_id)["RouteTable"]["RouteTableId"]
    ec2.create_route(RouteTableId=public_rt, DestinationCidrBlock="0.0.0.0/0", GatewayId=igw)
    eip = ec2.allocate_address(Domain="vpc")["AllocationId"]
    nat = ec2.create_nat_gateway(SubnetId=subnets["public-a"], AllocationId=eip)["NatGateway"][
        "NatGatewayId"
    ]
    private_rt = ec2.create_route_table(VpcId=vpc_id)["RouteTable"]["RouteTableId"]
    ec2.create_route(RouteTableId=private_rt, DestinationCidrBlock="0.0.0.0/0", NatGatewayId=nat)
    for name, table in [
        ("public-a", public_rt),
        ("public-b", public_rt),
        ("private-a", private_rt),
        ("private-b", private_rt),
    ]:
        ec2.associate_route_table(RouteTableId=table, SubnetId=subnets[name])
    # A subnet in a zone the load balancer does not serve, for the plan that must refuse it.
    subnets["public-c"] = ec2.create_subnet(
        VpcId=vpc_id, CidrBlock="10.0.3.0/24", AvailabilityZone="us-east-1c"
    )["Subnet"]["SubnetId"]

    alb_sg = ec2.create_security_group(
        GroupName=f"{prefix}-alb",
        Description="Load balancer of *.uat.example.test",
        VpcId=vpc_id,
    )["GroupId"]
    ec2.authorize_security_group_ingress(
        GroupId=alb_sg,
        IpPermissions=[
            {
                "IpProtocol": "tcp",
                "FromPort": 80,
                "ToPort": 80,
                "IpRanges": [{"CidrIp": "0.0.0.0/0"}],
            }
        ],
    )
    lb_arn = elbv2.create_load_balancer(
        Name=f"{prefix}-alb",
        Subnets=[subnets["public-a"], subnets["public-b"]],
        SecurityGroups=[alb_sg],
        Scheme="internet-facing",
        Type="application",
    )["LoadBalancers"][0]["LoadBalancerArn"]
    listener_arn = elbv2.create_listener(
        LoadBalancerArn=lb_arn,
        Protocol="HTTP",
        Port=80,
        DefaultActions=[
            {
                "Type": "fixed-response",
                "FixedResponseConfig": {
                    "StatusCode": "404",
                    "ContentType": "text/plain",
                    "MessageBody": "no such host",
                },
            }
        ],
    )["Listeners"][0]["ListenerArn"]

    os.makedirs(out_dir, exist_ok=True)
    package = os.path.join(out_dir, "webhook.zip")
    with zipfile.ZipFile(package, "w") as z:
        info = zipfile.ZipInfo("bootstrap")
        info.external_attr = 0o755 << 16
        z.writestr(info, "#!/bin/sh\necho 'stand-in for cca-webhook' >&2\nexit 1\n")

    tfvars = {
        "region": REGION,
        "name_prefix": prefix,
        "vpc_id": vpc_id,
        "agent_subnet_ids": [subnets["public-a"], subnets["public-b"]],
        "lambda_subnet_ids": [subnets["private-a"], subnets["private-b"]],
        "assign_public_ip": True,
        "alb_listener_arn": listener_arn,
        "uat_domain_suffix": "uat.example.test",
        "lambda_zip_path": package,
        "enable_jira": True,
        "idle_timeout_secs": 1800,
        # A test deployment is thrown away with the emulator.
        "table_deletion_protection": False,
        "secret_recovery_window_days": 0,
    }
    with open(os.path.join(out_dir, "test.tfvars.json"), "w") as f:
        json.dump(tfvars, f, indent=2)
    with open(os.path.join(out_dir, "subnets.json"), "w") as f:
        json.dump(subnets, f, indent=2)
    print(json.dumps({"vpc_id": vpc_id, "alb_listener_arn": listener_arn, "alb_security_group": alb_sg}))


if __name__ == "__main__":
    main()
