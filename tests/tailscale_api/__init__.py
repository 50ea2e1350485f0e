"""A stand-in for Tailscale's API (tests only): the key and OAuth token endpoints the tailscale
provider calls, answering as the API documents, with keys minted in the test's Headscale."""

from tests.tailscale_api.headscale_keys import HeadscaleKeys
from tests.tailscale_api.server import ApiUser, OAuthClient, Recorded, TailscaleApi

__all__ = ["ApiUser", "HeadscaleKeys", "OAuthClient", "Recorded", "TailscaleApi"]
