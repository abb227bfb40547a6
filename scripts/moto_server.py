#!/usr/bin/env python3
"""Start the local AWS emulator (moto server) used by the test stand.

Usage: python3 scripts/moto_server.py --host 127.0.0.1 --port PORT

Before serving, a few faults of moto's emulation are patched in memory. Each
one breaks a call that the product makes through the Rust AWS SDK, or makes
moto answer differently from AWS where the product reads the answer, and each
patch is kept as small as the fault. The patches target moto 5.2.x
(pinned by scripts/test.sh); a newer moto may not need them.
"""

import argparse
import threading
import types

from moto import server
from moto.awslambda.policy import Policy as LambdaPolicy
from moto.dynamodb.responses import DynamoHandler
from moto.ec2.models.elastic_network_interfaces import NetworkInterface
from moto.ecs import models as ecs_models


def _patch_missing_container_memory():
    # Fargate task definitions usually size memory at the task level only;
    # moto adds every container's `memory` to an int and answers RunTask with
    # HTTP 500 when a container has none, so count such containers as 0.
    backend = ecs_models.EC2ContainerServiceBackend
    original = backend._calculate_task_resource_requirements
    sizing_keys = ("memory", "memoryReservation", "Memory", "MemoryReservation")

    def requirements(task_definition):
        definitions = [
            cd
            if any(cd.get(key) is not None for key in sizing_keys)
            else {**cd, "memory": 0}
            for cd in task_definition.container_definitions
        ]
        return original(types.SimpleNamespace(container_definitions=definitions))

    backend._calculate_task_resource_requirements = staticmethod(requirements)


def _patch_eni_dns_name():
    # moto sets `private_dns_name` only when the VPC has DNS hostnames on, yet
    # RunTask in awsvpc mode reads it for every task; a class default of None
    # lets tasks start in VPCs made with the defaults.
    NetworkInterface.private_dns_name = None


def _patch_container_sizes_as_strings():
    # The ECS API types `containers[].cpu` and `containers[].memory` as
    # strings, but moto copies the task definition's integers and serializes
    # them as JSON numbers, which the Rust SDK refuses to parse. Converting at
    # construction fixes RunTask, DescribeTasks and StopTask alike.
    original = ecs_models.Container.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        for field in ("cpu", "memory"):
            value = getattr(self, field)
            if value is not None:
                setattr(self, field, str(value))

    ecs_models.Container.__init__ = init


def _patch_serialized_dynamodb():
    # moto checks a DynamoDB write's condition and then writes without a lock,
    # and undoes a cancelled transaction by restoring a copy of the table, so
    # two racing conditional writes can both succeed; DynamoDB applies each
    # request atomically. One lock around each DynamoDB request restores that.
    lock = threading.Lock()
    original = DynamoHandler.call_action

    def call_action(self):
        with lock:
            return original(self)

    DynamoHandler.call_action = call_action


def _patch_lambda_permission_conditions():
    # AddPermission's FunctionUrlAuthType and InvokedViaFunctionUrl become
    # conditions of the statement in AWS (lambda:FunctionUrlAuthType,
    # lambda:InvokedViaFunctionUrl), which GetPolicy shows and `cca doctor`
    # checks; moto copies them into the statement as unknown keys.
    original = LambdaPolicy.decode_policy

    def decode_policy(self, obj):
        if "Action" not in obj:
            return original(self, obj)
        conditions = {}
        auth_type = obj.pop("FunctionUrlAuthType", None)
        if auth_type is not None:
            conditions["StringEquals"] = {"lambda:FunctionUrlAuthType": auth_type}
        via_url = obj.pop("InvokedViaFunctionUrl", None)
        if via_url is not None:
            conditions["Bool"] = {"lambda:InvokedViaFunctionUrl": str(bool(via_url)).lower()}
        policy = original(self, obj)
        if conditions:
            statement = policy.statements[0]
            merged = statement.setdefault("Condition", {})
            for operator, pairs in conditions.items():
                merged.setdefault(operator, {}).update(pairs)
        return policy

    LambdaPolicy.decode_policy = decode_policy


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()

    _patch_missing_container_memory()
    _patch_eni_dns_name()
    _patch_container_sizes_as_strings()
    _patch_serialized_dynamodb()
    _patch_lambda_permission_conditions()

    server.main(["--host", args.host, "--port", str(args.port)])


if __name__ == "__main__":
    main()
