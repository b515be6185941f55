"""Response bodies of the transparency log's HTTP API (docs/audit-format.md §8)."""

from __future__ import annotations

from pydantic import BaseModel, Field

Hex = str


class ReceiptRead(BaseModel):
    receipt: str = Field(description="JWS compact serialisation (docs/audit-format.md §6)")
    kid: str
    alg: str
    book: str
    seq: int
    tx_id: str
    entry_hash: Hex
    leaf_hash: Hex
    iat: int = Field(description="the entry's posted_at in whole Unix seconds")
    size_bytes: int
    jwks_uri: str


class CheckpointRead(BaseModel):
    book: str
    origin: str = Field(description="the checkpoint's origin, also its signing key's name")
    tree_size: int
    root: Hex
    note: str = Field(description="the signed note (C2SP tlog-checkpoint in signed-note form)")
    kid: str = Field(description="the JWKS key that signed it")
    signed_at: str
    vkey: str | None = Field(default=None, description="the signing key as a C2SP vkey")


class CheckpointPage(BaseModel):
    items: list[CheckpointRead]
    next_after_tree_size: int | None = Field(
        description="pass as after_tree_size for the next page; null at the end"
    )


class InclusionProofRead(BaseModel):
    book: str
    seq: int
    leaf_index: int
    tree_size: int
    leaf_hash: Hex
    root: Hex
    proof: list[Hex] = Field(description="RFC 9162 PATH, lowercase hex, leaf side first")


class ConsistencyProofRead(BaseModel):
    book: str
    first: int
    second: int
    first_root: Hex
    second_root: Hex
    proof: list[Hex] = Field(description="RFC 9162 PROOF, lowercase hex")


class Jwk(BaseModel):
    kty: str
    crv: str
    x: str
    kid: str
    use: str
    alg: str
    valid_from: str
    valid_until: str | None = None


class JwkSet(BaseModel):
    keys: list[Jwk]


class ExportTrailer(BaseModel):
    """The last line of a JSON Lines export (docs/audit-format.md §8.5)."""

    checkpoint: CheckpointRead
    from_seq: int
    to_seq: int
    prefix: list[Hex] = Field(description="the peaks of the leaves before from_seq")
    consistency: list[Hex] = Field(description="RFC 9162 PROOF from to_seq to the checkpoint")
    jwks: dict[str, list[dict[str, str]]]


class WitnessRead(BaseModel):
    name: str = Field(description="the witness's name, its key name")
    vkey: str = Field(description="its cosigner key (C2SP tlog-cosignature, type 0x04)")
    url: str = Field(description="its submission prefix (C2SP tlog-witness)")
    cosigned_size: int | None = Field(description="the tree size it last cosigned; null: none")
    cosigned_at: str | None = Field(description="the time its last cosignature states")
    failures: int = Field(description="requests in a row that got no usable answer")
    last_error: str | None
    alarm: bool = Field(
        description="it refused this log's checkpoint (a status other than 409): the log "
        "showed it a history that does not extend what it cosigned, or it does not know the "
        "log; cleared when it cosigns again"
    )
    refused_at: str | None
    refusal: str | None = Field(description="the refusal's status and text")


class WitnessList(BaseModel):
    book: str
    alarm: bool = Field(description="whether any witness refused (see each item)")
    items: list[WitnessRead]
