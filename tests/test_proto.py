"""The committed stubs are exactly what protos/gram/v1/gram.proto generates (run `make proto`)."""

import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_committed_stubs_match_the_proto(tmp_path):
    from grpc_tools import protoc

    (tmp_path / "gram_ray" / "proto").mkdir(parents=True)
    shutil.copy(ROOT / "protos" / "gram" / "v1" / "gram.proto", tmp_path / "gram.proto")
    args = [
        "protoc", f"-Igram_ray/proto={tmp_path}", f"--python_out={tmp_path}", f"--grpc_python_out={tmp_path}",
        f"--pyi_out={tmp_path}", "gram_ray/proto/gram.proto",
    ]
    assert protoc.main(args) == 0
    for name in ("gram_pb2.py", "gram_pb2.pyi", "gram_pb2_grpc.py"):
        generated = (tmp_path / "gram_ray" / "proto" / name).read_text()
        committed = (ROOT / "gram_ray" / "proto" / name).read_text()
        assert generated == committed, f"gram_ray/proto/{name} is stale: run `make proto`"


def test_service_surface():
    from gram_ray.proto import gram_pb2

    service = gram_pb2.DESCRIPTOR.services_by_name["RewardComparator"]
    assert service.full_name == "gram.v1.RewardComparator"
    assert {m.name for m in service.methods} == {"Compare", "Rank", "Reward", "Health"}
