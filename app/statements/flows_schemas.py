"""Response bodies of the exchange statistics (GET /v1/stats/exchange)."""

from __future__ import annotations

from datetime import date
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

FlowGroupBy = Literal["month", "day"]

_PER_ASSET = "per asset code, in the asset's unit (HOUR: minutes)"


class FlowFigures(BaseModel):
    count: int = Field(description="journal entries of this flow")
    members_gave: dict[str, int] = Field(
        description=f"units that left members' accounts in these entries, {_PER_ASSET}"
    )
    members_received: dict[str, int] = Field(
        description=f"units that reached members' accounts in these entries, {_PER_ASSET} "
        "(a storage cap's overflow to the public time pool is not counted)"
    )


class Flows(BaseModel):
    exchange: FlowFigures = Field(
        description="entries of kind `exchange`: members give `from_asset` (e.g. HOUR) and "
        "receive `to_asset` (e.g. POINT) from an organisation's pool"
    )
    kiosk_redemption: FlowFigures = Field(
        description="`hold.post` entries whose hold belongs to a kiosk redemption (the hold's "
        "meta names it): points members spent at charity supermarkets"
    )
    gift: FlowFigures = Field(description="entries of kind `gift`: 转赠 between members")
    recognition_out: FlowFigures = Field(
        description="entries of kind `recognition.out`: members' units moved to another book"
    )
    recognition_in: FlowFigures = Field(
        description="entries of kind `recognition.in`: units moved in from another book"
    )
    public_pool_grant: FlowFigures = Field(
        description="entries of kind `public_pool.grant`: the public time pool to members"
    )
    expiry: FlowFigures = Field(description="entries of kind `expiry`: units that lapsed")
    reversal: FlowFigures = Field(
        description="reversals posted in the period of entries of the flows above (of any "
        "period): the flows are counted as posted, so subtract these for net figures"
    )


class FlowPeriod(BaseModel):
    period: str = Field(
        description="YYYY-MM (group_by=month) or YYYY-MM-DD (day) in the service time zone"
    )
    flows: Flows = Field(description="each flow's entries in the period")


class RecordedExchanges(BaseModel):
    count: int = Field(description="exchanges")
    given: dict[str, int] = Field(description=f"what members gave, {_PER_ASSET}")
    paid: dict[str, int] = Field(description=f"what the paying pools paid out, {_PER_ASSET}")


class ExchangeReconciliation(BaseModel):
    journal: RecordedExchanges = Field(
        description="from the `exchange` entries: given = members' debits, paid = the "
        "debits of other accounts (the paying pools)"
    )
    recorded: RecordedExchanges = Field(
        description="from `exchange_quotes` executed in scope: from_amount by the rule's "
        "from_asset, to_amount by its to_asset"
    )
    unmatched: int = Field(
        description="executed quotes whose tx_id names no `exchange` entry of the book"
    )
    reconciled: bool = Field(description="whether journal equals recorded and none is unmatched")


class RecordedRedemptions(BaseModel):
    count: int = Field(description="confirmed redemptions")
    spent: dict[str, int] = Field(description=f"what members spent, {_PER_ASSET}")


class RedemptionReconciliation(BaseModel):
    journal: RecordedRedemptions = Field(
        description="from the `hold.post` entries of redemption holds: members' debits"
    )
    recorded: RecordedRedemptions = Field(
        description="from `kiosk_redemptions` confirmed in scope: their totals by asset"
    )
    unmatched: int = Field(
        description="confirmed redemptions whose tx_id is not a `hold.post` of their own hold"
    )
    reconciled: bool = Field(description="whether journal equals recorded and none is unmatched")


class FlowReconciliation(BaseModel):
    exchanges: ExchangeReconciliation = Field(
        description="the journal's `exchange` entries beside the executed quotes"
    )
    kiosk_redemptions: RedemptionReconciliation = Field(
        description="the journal's redemption `hold.post` entries beside the confirmed redemptions"
    )
    reconciled: bool = Field(description="whether both are reconciled")


class ExchangeStats(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    book: str = Field(description="the book counted")
    organisation_id: UUID | None = Field(
        description="an organisation's view: only entries that move one of its accounts "
        "(null: the whole book)"
    )
    group_by: FlowGroupBy = Field(description="the length of a period")
    period_from: date | None = Field(alias="from", description="first service day, inclusive")
    period_to: date | None = Field(alias="to", description="last service day, inclusive")
    timezone: str = Field(description="the time zone service days and months are counted in")
    periods: list[FlowPeriod] = Field(
        description="each period with at least one entry of a flow, in order; entries are "
        "placed by their posted_at"
    )
    totals: Flows = Field(description="the flows over the whole scope")
    reconciliation: FlowReconciliation = Field(
        description="the journal's figures beside the features' own tables, over the scope"
    )
