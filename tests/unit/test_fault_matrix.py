"""The fault matrix covers every step of every builder: each step class the builders define is in the step list
of some matrix case, the cases are the builders' own step lists, and step names are unique (GOLDSMITH_FAIL_STEP
names a step)."""

import importlib
import inspect
import pkgutil

import fault_matrix
import goldsmith_provider.builders as builders_pkg
from goldsmith_provider.builders.aws import builder as aws
from goldsmith_provider.builders.docker import builder as docker
from goldsmith_provider.builders.qemu import builder as qemu
from goldsmith_provider.engine.runner import BaseStep


def defined_step_classes() -> set[type]:
    """Every concrete step class defined anywhere under goldsmith_provider.builders."""
    found = set()
    for info in pkgutil.walk_packages(builders_pkg.__path__, builders_pkg.__name__ + "."):
        module = importlib.import_module(info.name)
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, BaseStep) and obj is not BaseStep and obj.__module__ == module.__name__:
                found.add(obj)
    return found


def matrix_step_lists(tmp_path) -> dict[str, list]:
    """The step objects the matrix cases run, per builder path, from the matrix's own specs."""
    rootfs = tmp_path / "rootfs.tar"
    rootfs.touch()
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "motd").touch()
    q, problems = qemu.prepare(fault_matrix.qemu_props("fm", tmp_path / "out", boot_test=True), tmp_path)
    assert problems == []
    d, problems = docker.prepare(fault_matrix.docker_props("fm", rootfs, "127.0.0.1:5000"), tmp_path)
    assert problems == []
    a, problems = aws.prepare({
        "name": "fm", "source": {"type": "ami", "id": "ami-04681a1dbd79675a5"}, "provisioners": fault_matrix.AWS_PROVISIONERS,
        "communicator": {"user": "admin", "cidrs": ["10.0.0.0/8"]}, "aws": {"region": "us-east-1"},
        "distribution": {"regions": ["eu-west-1"], "share": {"accounts": ["111122223333"]}}}, tmp_path)
    assert problems == []
    return {"qemu": qemu.build_steps(q), "docker": docker.build_steps(d), "docker-adopt": docker.adopt_steps("sha256:x"),
            "aws": aws.build_steps(a), "aws-adopt": aws.distribution_steps()}


def test_every_step_class_of_every_builder_is_in_the_matrix(tmp_path):
    lists = matrix_step_lists(tmp_path)
    covered = {type(step) for steps in lists.values() for step in steps}
    missing = sorted(f"{c.__module__}.{c.__name__}" for c in defined_step_classes() - covered)
    assert missing == [], "steps no fault-matrix case fails: add them to the builder's step list or the matrix spec"
    assert len(defined_step_classes()) >= 30  # the walk really found the builders' steps


def test_the_cases_are_the_builders_own_step_lists_with_unique_names(tmp_path):
    lists = matrix_step_lists(tmp_path)
    assert fault_matrix.qemu_cases() == [s.name for s in lists["qemu"]]
    assert fault_matrix.docker_cases() == ([("build", s.name) for s in lists["docker"]]
                                           + [("adopt", s.name) for s in lists["docker-adopt"]])
    assert fault_matrix.aws_cases() == [s.name for s in lists["aws"]]
    # an adoption's distribution steps are the build's last steps: covered by the build's cases
    assert [s.name for s in lists["aws"]][-len(lists["aws-adopt"]):] == [s.name for s in lists["aws-adopt"]]
    for path, steps in lists.items():
        names = [s.name for s in steps]
        assert len(names) == len(set(names)), (path, names)
    # every provisioner is its own step, named after its position
    assert [n for n in fault_matrix.aws_cases() if n.startswith("provision[")] == ["provision[0] file", "provision[1] shell"]


def test_the_matrix_has_its_cost_bounded_qemu_spec():
    props = fault_matrix.qemu_props("fm", fault_matrix.Path("/tmp/out"))
    assert props["source"] == {"type": "debootstrap"} and not props["boot_test"]["enabled"]
    assert [fault_matrix.qemu_needs_boot_test(s) for s in fault_matrix.qemu_cases()].count(True) == 1
    assert not any(p["type"] == "updates" for p in props["provisioners"])
