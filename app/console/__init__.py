"""The console: the web page of district admins, organisations' staff and auditors, served at
/console/. Its data comes from the same API as every other client, under the same rules."""

from pathlib import Path

# The console's web page, served at /console/.
PAGE_DIRECTORY = Path(__file__).parent / "static"
