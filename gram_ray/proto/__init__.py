"""Python stubs of the gRPC API, generated from ``protos/gram/v1/gram.proto``.

Regenerate with ``make proto`` after editing the .proto; ``tests/test_proto.py`` fails while the
committed stubs differ from what the .proto generates. The stubs live inside ``gram_ray`` so that
their module path (``gram_ray.proto.gram_pb2``) is the same in every Ray process that unpickles
a message.
"""

from gram_ray.proto import gram_pb2, gram_pb2_grpc

__all__ = ["gram_pb2", "gram_pb2_grpc"]
