"""witness.json and witness.key: what loads, and the one clear error of what does not."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest

from app.audit.note import Verifier
from app.witness.app import create_app
from app.witness.config import (
    WitnessConfigError,
    WitnessDir,
    create_key,
    load_config,
    load_key,
)
from tests.witness.conftest import ORIGIN, WITNESS, Log, Witnessed


def write(witnessed: Witnessed, document: object) -> None:
    (witnessed.root / "witness.json").write_text(json.dumps(document))


def test_defaults_and_round_trip(witnessed: Witnessed) -> None:
    config = load_config(WitnessDir(witnessed.root))
    assert (config.name, config.listen.host, config.listen.port) == (WITNESS, "127.0.0.1", 8791)
    assert list(config.log_keys()) == [ORIGIN]
    assert load_key(WitnessDir(witnessed.root), WITNESS).cosigner == witnessed.cosigner
    assert "PRIVATE" not in repr(load_key(WitnessDir(witnessed.root), WITNESS))


@pytest.mark.parametrize(
    ("document", "fault"),
    [
        ({"name": "a b"}, "name: Value error, a witness name is a key name"),
        ({"name": "w", "extra": 1}, "extra: Extra inputs are not permitted"),
        ({"name": "w", "listen": {"port": 0}}, "listen.port: Input should be greater than"),
        ({"name": "w", "logs": [{"origin": "o", "vkeys": []}]}, "logs.0.vkeys: List should"),
        ({"name": "w", "logs": [{"origin": "o", "vkeys": ["x"]}]}, "not an Ed25519 note"),
        ({"name": "w", "logs": [{"origin": "o\n", "vkeys": ["x"]}]}, "one line of printable"),
    ],
)
def test_a_bad_witness_json_names_the_field(
    witnessed: Witnessed, document: object, fault: str
) -> None:
    write(witnessed, document)
    with pytest.raises(WitnessConfigError) as refused:
        load_config(WitnessDir(witnessed.root))
    assert str(refused.value).startswith(f"{witnessed.root / 'witness.json'}: ")
    assert fault in str(refused.value)


def test_log_keys_must_be_named_by_the_origin_once_each(witnessed: Witnessed) -> None:
    log = witnessed.log
    stranger = Verifier.from_public_key("other", Log().key.public_key()).vkey()
    cosigner = witnessed.cosigner.vkey()
    for vkeys, fault in [
        ([stranger], "is not named by the origin"),
        ([log.verifier.vkey(), log.verifier.vkey()], "lists one key twice"),
        ([cosigner.replace(WITNESS, ORIGIN)], "not an Ed25519 note verifier key"),
    ]:
        write(witnessed, {"name": WITNESS, "logs": [{"origin": ORIGIN, "vkeys": vkeys}]})
        with pytest.raises(WitnessConfigError, match=fault):
            load_config(WitnessDir(witnessed.root))
    twice = {"origin": ORIGIN, "vkeys": [log.verifier.vkey()]}
    write(witnessed, {"name": WITNESS, "logs": [twice, twice]})
    with pytest.raises(WitnessConfigError, match="an origin is listed twice"):
        load_config(WitnessDir(witnessed.root))


def test_the_key_file_must_be_private_whole_and_the_witnesses(
    witnessed: Witnessed, tmp_path: Path
) -> None:
    files = WitnessDir(witnessed.root)
    with pytest.raises(WitnessConfigError, match="is the key of"):
        load_key(files, "someone-else")
    with pytest.raises(WitnessConfigError, match="exists already"):
        create_key(files, WITNESS)
    os.chmod(files.key_path, 0o640)
    with pytest.raises(WitnessConfigError, match="chmod 600"):
        create_app(witnessed.root)
    os.chmod(files.key_path, 0o600)
    secret = files.key_path.read_text().strip()
    # `PRIVATE+KEY+<name>+<id>+<base64>`: the base64 may hold a '+' of its own.
    *head, material = secret.split("+", 4)
    # The same seed as a plain note key (type 0x01): not a cosigner's.
    plain = base64.b64encode(b"\x01" + base64.b64decode(material)[1:]).decode()
    files.key_path.write_text("+".join([*head, plain]) + "\n")
    with pytest.raises(WitnessConfigError) as refused:
        load_key(files, WITNESS)
    assert "does not hold a cosigner key" in str(refused.value)
    assert material[2:] not in str(refused.value) and plain[2:] not in str(refused.value)
    with pytest.raises(WitnessConfigError, match="does not exist: run `timebank witness init"):
        load_config(WitnessDir(tmp_path / "nowhere"))
