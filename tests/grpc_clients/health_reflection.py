"""gRPC clients Assay did not write, against a running assay-verifier.

Uses grpcio's own health-checking and reflection clients (PyPI:
grpcio-health-checking, grpcio-reflection), and only what reflection tells:
no Assay .proto file is read here.

    python health_reflection.py --target 127.0.0.1:PORT --ca ca.pem \
        [--cert client.pem --key client.key] COMMAND [ARG]

Commands (each prints one JSON object on stdout):
    services        the services server reflection lists
    check SERVICE   grpc.health.v1 Check ("" for the server as a whole)
    call-jwks       assay.v1.Tokens/Jwks, its message types taken from
                    reflection (a dynamic call)
    watch SERVICE   grpc.health.v1 Watch: one JSON line per status as it
                    comes, then {"ended": CODE} when the stream ends
"""

import argparse
import json
import sys

import grpc
from google.protobuf import descriptor_pool, message_factory
from google.protobuf.json_format import MessageToDict
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)


def channel(args):
    creds = grpc.ssl_channel_credentials(
        root_certificates=open(args.ca, "rb").read(),
        private_key=open(args.key, "rb").read() if args.key else None,
        certificate_chain=open(args.cert, "rb").read() if args.cert else None,
    )
    return grpc.secure_channel(args.target, creds)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--target", required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--timeout", type=float, default=10.0)
    p.add_argument("command", choices=["services", "check", "call-jwks", "watch"])
    p.add_argument("arg", nargs="?", default="")
    args = p.parse_args()
    ch = channel(args)
    try:
        if args.command == "watch":
            stub = health_pb2_grpc.HealthStub(ch)
            try:
                for r in stub.Watch(health_pb2.HealthCheckRequest(service=args.arg)):
                    name = health_pb2.HealthCheckResponse.ServingStatus.Name(r.status)
                    print(json.dumps({"status": name}), flush=True)
                out = {"ended": "OK"}
            except grpc.RpcError as e:
                out = {"ended": e.code().name}
        elif args.command == "services":
            db = ProtoReflectionDescriptorDatabase(ch)
            out = {"services": sorted(db.get_services())}
        elif args.command == "check":
            stub = health_pb2_grpc.HealthStub(ch)
            try:
                r = stub.Check(
                    health_pb2.HealthCheckRequest(service=args.arg),
                    timeout=args.timeout,
                )
                status = health_pb2.HealthCheckResponse.ServingStatus.Name(r.status)
                out = {"service": args.arg, "status": status}
            except grpc.RpcError as e:
                out = {"service": args.arg, "error": e.code().name}
        else:
            db = ProtoReflectionDescriptorDatabase(ch)
            pool = descriptor_pool.DescriptorPool(db)
            method = pool.FindServiceByName("assay.v1.Tokens").FindMethodByName("Jwks")
            req_cls = message_factory.GetMessageClass(method.input_type)
            resp_cls = message_factory.GetMessageClass(method.output_type)
            call = ch.unary_unary(
                "/assay.v1.Tokens/Jwks",
                request_serializer=req_cls.SerializeToString,
                response_deserializer=resp_cls.FromString,
            )
            resp = call(req_cls(), timeout=args.timeout)
            out = {
                "input": method.input_type.full_name,
                "output": method.output_type.full_name,
                "response": MessageToDict(resp, preserving_proto_field_name=True),
            }
    finally:
        ch.close()
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
