#!/usr/bin/python3
"""A small CRI client for the containerd tests (runtime/tests/containerd.rs): one call of
Kubernetes' CRI RuntimeService (runtime.v1) over containerd's socket, as the kubelet makes it.

    cri.py SOCKET METHOD REQUEST_JSON

Prints the response as JSON and exits 0, or prints the gRPC error on stderr and exits 1.
The messages are encoded from JSON by the field table below (numbers from the CRI's
api.proto), so no generated code or protoc is needed: only Debian's python3-grpcio.
"""

import json
import sys

import grpc

# message -> field -> (number, kind); kind is a scalar ("string", "bytes", "bool", "int",
# "enum"), "map" (string to string), a message name, or a list of one of those (repeated).
SCHEMA = {
    "VersionRequest": {"version": (1, "string")},
    "VersionResponse": {"version": (1, "string"), "runtime_name": (2, "string"),
                        "runtime_version": (3, "string"), "runtime_api_version": (4, "string")},
    "RunPodSandboxRequest": {"config": (1, "PodSandboxConfig"), "runtime_handler": (2, "string")},
    "RunPodSandboxResponse": {"pod_sandbox_id": (1, "string")},
    "PodSandboxConfig": {"metadata": (1, "PodSandboxMetadata"), "hostname": (2, "string"),
                         "log_directory": (3, "string"), "labels": (6, "map"),
                         "annotations": (7, "map"), "linux": (8, "LinuxPodSandboxConfig")},
    "PodSandboxMetadata": {"name": (1, "string"), "uid": (2, "string"),
                           "namespace": (3, "string"), "attempt": (4, "int")},
    "LinuxPodSandboxConfig": {"cgroup_parent": (1, "string"),
                              "security_context": (2, "LinuxSandboxSecurityContext")},
    "LinuxSandboxSecurityContext": {"namespace_options": (1, "NamespaceOption"),
                                    "privileged": (6, "bool")},
    "NamespaceOption": {"network": (1, "enum"), "pid": (2, "enum"), "ipc": (3, "enum")},
    "PodSandboxIdRequest": {"pod_sandbox_id": (1, "string")},
    "CreateContainerRequest": {"pod_sandbox_id": (1, "string"), "config": (2, "ContainerConfig"),
                               "sandbox_config": (3, "PodSandboxConfig")},
    "CreateContainerResponse": {"container_id": (1, "string")},
    "ContainerConfig": {"metadata": (1, "ContainerMetadata"), "image": (2, "ImageSpec"),
                        "command": (3, ["string"]), "args": (4, ["string"]),
                        "working_dir": (5, "string"), "envs": (6, ["KeyValue"]),
                        "log_path": (11, "string"), "tty": (14, "bool"),
                        "linux": (15, "LinuxContainerConfig")},
    "ContainerMetadata": {"name": (1, "string"), "attempt": (2, "int")},
    "ImageSpec": {"image": (1, "string")},
    "KeyValue": {"key": (1, "string"), "value": (2, "string")},
    "LinuxContainerConfig": {"resources": (1, "LinuxContainerResources"),
                             "security_context": (2, "LinuxContainerSecurityContext")},
    "LinuxContainerResources": {"cpu_period": (1, "int"), "cpu_quota": (2, "int"),
                                "cpu_shares": (3, "int"), "memory_limit_in_bytes": (4, "int"),
                                "oom_score_adj": (5, "int"), "cpuset_cpus": (6, "string"),
                                "cpuset_mems": (7, "string"), "unified": (9, "map"),
                                "memory_swap_limit_in_bytes": (10, "int")},
    "LinuxContainerSecurityContext": {"capabilities": (1, "Capability"), "privileged": (2, "bool"),
                                      "namespace_options": (3, "NamespaceOption"),
                                      "readonly_rootfs": (7, "bool"), "no_new_privs": (11, "bool"),
                                      "seccomp": (15, "SecurityProfile")},
    "Capability": {"add_capabilities": (1, ["string"]), "drop_capabilities": (2, ["string"])},
    "SecurityProfile": {"profile_type": (1, "enum"), "localhost_ref": (2, "string")},
    "ContainerIdRequest": {"container_id": (1, "string")},
    "StopContainerRequest": {"container_id": (1, "string"), "timeout": (2, "int")},
    "ContainerStatusResponse": {"status": (1, "ContainerStatus"), "info": (2, "map")},
    "ContainerStatus": {"id": (1, "string"), "metadata": (2, "ContainerMetadata"),
                        "state": (3, "enum"), "created_at": (4, "int"), "started_at": (5, "int"),
                        "finished_at": (6, "int"), "exit_code": (7, "int"),
                        "image": (8, "ImageSpec"), "image_ref": (9, "string"),
                        "reason": (10, "string"), "message": (11, "string"),
                        "log_path": (15, "string")},
    "ExecSyncRequest": {"container_id": (1, "string"), "cmd": (2, ["string"]),
                        "timeout": (3, "int")},
    "ExecSyncResponse": {"stdout": (1, "bytes"), "stderr": (2, "bytes"), "exit_code": (3, "int")},
    "UpdateContainerResourcesRequest": {"container_id": (1, "string"),
                                        "linux": (2, "LinuxContainerResources")},
    "Empty": {},
}

# method -> (request message, response message)
METHODS = {
    "Version": ("VersionRequest", "VersionResponse"),
    "RunPodSandbox": ("RunPodSandboxRequest", "RunPodSandboxResponse"),
    "StopPodSandbox": ("PodSandboxIdRequest", "Empty"),
    "RemovePodSandbox": ("PodSandboxIdRequest", "Empty"),
    "CreateContainer": ("CreateContainerRequest", "CreateContainerResponse"),
    "StartContainer": ("ContainerIdRequest", "Empty"),
    "StopContainer": ("StopContainerRequest", "Empty"),
    "RemoveContainer": ("ContainerIdRequest", "Empty"),
    "ContainerStatus": ("ContainerIdRequest", "ContainerStatusResponse"),
    "ExecSync": ("ExecSyncRequest", "ExecSyncResponse"),
    "UpdateContainerResources": ("UpdateContainerResourcesRequest", "Empty"),
}

# Enums by name, for readable requests and responses.
ENUMS = {
    ("NamespaceOption", "network"): ["POD", "CONTAINER", "NODE", "TARGET"],
    ("NamespaceOption", "pid"): ["POD", "CONTAINER", "NODE", "TARGET"],
    ("NamespaceOption", "ipc"): ["POD", "CONTAINER", "NODE", "TARGET"],
    ("SecurityProfile", "profile_type"): ["RuntimeDefault", "Unconfined", "Localhost"],
    ("ContainerStatus", "state"): ["CONTAINER_CREATED", "CONTAINER_RUNNING",
                                   "CONTAINER_EXITED", "CONTAINER_UNKNOWN"],
}


def varint(n):
    n &= (1 << 64) - 1  # negative int64/int32: two's complement, ten bytes
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field(number, wire, payload):
    return varint(number << 3 | wire) + payload


def encode_value(message, name, number, kind, value):
    if kind in ("string", "bytes"):
        data = value.encode() if isinstance(value, str) else bytes(value)
        return field(number, 2, varint(len(data)) + data)
    if kind == "bool":
        return field(number, 0, varint(1 if value else 0))
    if kind == "int":
        return field(number, 0, varint(int(value)))
    if kind == "enum":
        if isinstance(value, str):
            value = ENUMS[(message, name)].index(value)
        return field(number, 0, varint(value))
    if kind == "map":
        out = b""
        for k, v in value.items():
            entry = encode_value("", "", 1, "string", k) + encode_value("", "", 2, "string", v)
            out += field(number, 2, varint(len(entry)) + entry)
        return out
    data = encode(kind, value)
    return field(number, 2, varint(len(data)) + data)


def encode(message, obj):
    schema = SCHEMA[message]
    out = b""
    for name, value in obj.items():
        if name not in schema:
            raise SystemExit(f"cri.py: {message} has no field {name!r} in this client's table")
        number, kind = schema[name]
        if isinstance(kind, list):
            for v in value:
                out += encode_value(message, name, number, kind[0], v)
        else:
            out += encode_value(message, name, number, kind, value)
    return out


def read_varint(data, i):
    shift = n = 0
    while True:
        b = data[i]
        i += 1
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return n, i


def decode(message, data):
    by_number = {num: (name, kind) for name, (num, kind) in SCHEMA[message].items()}
    obj = {}
    i = 0
    while i < len(data):
        key, i = read_varint(data, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            raw, i = read_varint(data, i)
        elif wire == 2:
            length, i = read_varint(data, i)
            raw, i = data[i:i + length], i + length
        elif wire == 1:
            raw, i = data[i:i + 8], i + 8
        elif wire == 5:
            raw, i = data[i:i + 4], i + 4
        else:
            raise SystemExit(f"cri.py: wire type {wire} in {message}")
        if number not in by_number:
            continue  # a field this client does not read
        name, kind = by_number[number]
        repeated = isinstance(kind, list)
        kind = kind[0] if repeated else kind
        if kind == "string":
            value = raw.decode()
        elif kind == "bytes":
            value = raw.decode(errors="replace")
        elif kind == "bool":
            value = bool(raw)
        elif kind == "int":
            value = raw - (1 << 64) if raw >= 1 << 63 else raw
        elif kind == "enum":
            names = ENUMS.get((message, name))
            value = names[raw] if names and raw < len(names) else raw
        elif kind == "map":
            entry = decode("KeyValue", raw)
            obj.setdefault(name, {})[entry.get("key", "")] = entry.get("value", "")
            continue
        else:
            value = decode(kind, raw)
        if repeated:
            obj.setdefault(name, []).append(value)
        else:
            obj[name] = value
    return obj


def main():
    if len(sys.argv) != 4 or sys.argv[2] not in METHODS:
        print(__doc__, file=sys.stderr)
        return 2
    socket, method, request = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    req_type, resp_type = METHODS[method]
    with grpc.insecure_channel(f"unix://{socket}") as channel:
        call = channel.unary_unary(f"/runtime.v1.RuntimeService/{method}")
        try:
            raw = call(encode(req_type, request), timeout=300)
        except grpc.RpcError as e:
            print(f"{e.code().name}: {e.details()}", file=sys.stderr)
            return 1
    print(json.dumps(decode(resp_type, raw)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
