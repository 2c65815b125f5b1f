"""The protobuf codec of `convex_keys.AdminKey`, byte for byte as prost handles it.

No dependencies: the settings, the CLI and the tests' stand-in backend can all use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Optional, Union

_UINT64_MAX = 2**64 - 1


class AdminKeyError(ValueError):
    """Any problem with an instance secret or an admin key; str() is one line."""


# --- protobuf: convex_keys.AdminKey ---------------------------------------------

_VARINT, _FIXED64, _LEN, _START_GROUP, _END_GROUP, _FIXED32 = range(6)
_MAX_GROUP_DEPTH = 100  # prost's recursion limit

_FIELD_INSTANCE_NAME = 1
_FIELD_ISSUED_S = 2
_FIELD_MEMBER_ID = 3
_FIELD_SYSTEM = 4
_FIELD_IS_READ_ONLY = 5


@dataclass(frozen=True)
class AdminKeyProto:
    """Decoded ``convex_keys.AdminKey``; identity is member_id xor system."""

    issued_s: int
    member_id: Optional[int] = None
    system: bool = False
    read_only: bool = False
    instance_name: Optional[str] = None


def is_uint64(value: object) -> bool:
    return (
        isinstance(value, int)
        and not isinstance(value, bool)
        and 0 <= value <= _UINT64_MAX
    )


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _key(field: int, wire_type: int) -> bytes:
    return _varint(field << 3 | wire_type)


def encode_admin_key_proto(
    *,
    issued_s: int,
    member_id: Optional[int] = None,
    system: bool = False,
    read_only: bool = False,
    instance_name: Optional[str] = None,
) -> bytes:
    """Encode like prost: canonical field order, proto3 defaults omitted.

    Deliberately permissive about content (issued_s=0, no identity) so that
    tests can build keys upstream refuses; issue_admin_key does the policing.
    """
    if not is_uint64(issued_s) or (member_id is not None and not is_uint64(member_id)):
        raise AdminKeyError("issued_s and member_id must be integers in 0..2**64-1")
    if system and member_id is not None:
        raise AdminKeyError("a key is either a system key or a member key, not both")
    out = bytearray()
    if instance_name is not None:
        name = instance_name.encode("utf-8")
        out += _key(_FIELD_INSTANCE_NAME, _LEN) + _varint(len(name)) + name
    if issued_s:
        out += _key(_FIELD_ISSUED_S, _VARINT) + _varint(issued_s)
    # Oneof members are always encoded, even when they hold the default value:
    # member 0 (the generic admin) must stay distinguishable from "no identity".
    if member_id is not None:
        out += _key(_FIELD_MEMBER_ID, _VARINT) + _varint(member_id)
    if system:
        out += _key(_FIELD_SYSTEM, _LEN) + _varint(0)
    if read_only:
        out += _key(_FIELD_IS_READ_ONLY, _VARINT) + _varint(1)
    return bytes(out)


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def at_end(self) -> bool:
        return self.pos >= len(self.data)

    def take(self, n: int) -> bytes:
        if n > len(self.data) - self.pos:
            raise AdminKeyError("admin key payload is truncated")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def varint(self) -> int:
        value = 0
        for i in range(10):
            byte = self.take(1)[0]
            # The tenth byte may only carry the 64th bit.
            if i == 9 and byte > 1:
                break
            value |= (byte & 0x7F) << (7 * i)
            if byte < 0x80:
                return value
        raise AdminKeyError("admin key payload has an over-long varint")

    def field(self, depth: int = 0) -> tuple[int, int, Union[int, bytes, None]]:
        key = self.varint()
        field, wire_type = key >> 3, key & 7
        if key > 0xFFFFFFFF or field == 0 or wire_type > _FIXED32:
            raise AdminKeyError("admin key payload has an invalid field tag")
        if wire_type == _VARINT:
            return field, wire_type, self.varint()
        if wire_type == _FIXED64:
            return field, wire_type, self.take(8)
        if wire_type == _FIXED32:
            return field, wire_type, self.take(4)
        if wire_type == _LEN:
            return field, wire_type, self.take(self.varint())
        if wire_type == _START_GROUP:
            self._skip_group(field, depth + 1)
        return field, wire_type, None

    def _skip_group(self, group_field: int, depth: int) -> None:
        if depth > _MAX_GROUP_DEPTH:
            raise AdminKeyError("admin key payload nests groups too deeply")
        while True:
            field, wire_type, _ = self.field(depth)
            if wire_type == _END_GROUP:
                if field != group_field:
                    raise AdminKeyError("admin key payload has a mismatched group")
                return


def _fields(data: bytes) -> Iterator[tuple[int, int, Union[int, bytes, None]]]:
    reader = _Reader(data)
    while not reader.at_end():
        field, wire_type, value = reader.field()
        if wire_type == _END_GROUP:
            raise AdminKeyError("admin key payload has a stray end-group tag")
        yield field, wire_type, value


def _expect(wire_type: int, expected: int, field: int) -> None:
    if wire_type != expected:
        raise AdminKeyError(f"admin key payload field {field} has the wrong wire type")


def decode_admin_key_proto(data: bytes) -> AdminKeyProto:
    """Decode like prost: unknown fields skipped, last oneof member wins."""
    fields: dict[str, object] = {}
    for field, wire_type, value in _fields(data):
        if field == _FIELD_INSTANCE_NAME:
            _expect(wire_type, _LEN, field)
            try:
                fields["instance_name"] = value.decode("utf-8")  # type: ignore[union-attr]
            except UnicodeDecodeError:
                raise AdminKeyError("admin key payload has a non-UTF-8 instance name") from None
        elif field == _FIELD_ISSUED_S:
            _expect(wire_type, _VARINT, field)
            fields["issued_s"] = value
        elif field == _FIELD_MEMBER_ID:
            _expect(wire_type, _VARINT, field)
            fields.update(member_id=value, system=False)
        elif field == _FIELD_SYSTEM:
            _expect(wire_type, _LEN, field)
            # google.protobuf.Empty: any content must still be well-formed.
            for _ in _fields(value):  # type: ignore[arg-type]
                pass
            fields.update(member_id=None, system=True)
        elif field == _FIELD_IS_READ_ONLY:
            _expect(wire_type, _VARINT, field)
            fields["read_only"] = value != 0
    fields.setdefault("issued_s", 0)
    return AdminKeyProto(**fields)  # type: ignore[arg-type]
