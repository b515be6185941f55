"""What of the kiosk a caller sees: sites and items of the books it reaches, redemptions as
identity's `sees_redemption` says; anything else is answered as missing (404). Who may change
a site's items is identity's `require_site_staff` (403)."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from app.http.caller import Caller
from app.identity.access import visible_organisation
from app.identity.authorization import require_site_staff, sees_redemption
from app.identity.errors import OrganisationNotFound
from app.kiosk import catalogue, errors, redemptions
from app.kiosk.catalogue import Site
from app.kiosk.schemas import RedemptionRead


async def visible_site(session: AsyncSession, caller: Caller, site_id: uuid.UUID) -> Site:
    """A kiosk site in the caller's book; 404 otherwise (reach first: what another book holds
    is not told, not even its kind)."""
    organisation = await visible_organisation(session, caller, site_id)
    return catalogue.site_of(organisation)


async def require_item_staff(
    session: AsyncSession, caller: Caller, item_id: uuid.UUID, action: str
) -> None:
    """The item's site is within reach (404 for the item otherwise) and the caller is its
    staff (403)."""
    try:
        item = await catalogue.get_item(session, item_id)
        site = await visible_site(session, caller, item.site_id)
    except OrganisationNotFound:
        raise errors.ItemNotFound(f"item {item_id} does not exist") from None
    require_site_staff(caller, str(site.id), action)


async def visible_redemption(
    session: AsyncSession, caller: Caller, redemption_id: uuid.UUID, lock: bool
) -> RedemptionRead:
    """A redemption within the caller's reach (locked for this transaction if `lock`); 404
    otherwise."""
    found = await redemptions.get(session, redemption_id, lock=lock)
    if not sees_redemption(caller, found.book, str(found.site_id), str(found.member_id)):
        raise errors.RedemptionNotFound(f"redemption {redemption_id} does not exist")
    return found
