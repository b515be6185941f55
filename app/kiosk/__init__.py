"""Kiosk redemption at charity supermarkets: catalogue and stock, member redeem codes,
redemptions (a hold, then its posting or voiding), daily reports, and the kiosk's web page."""

from pathlib import Path

# The kiosk's web page, served at /kiosk/.
PAGE_DIRECTORY = Path(__file__).parent / "static"
