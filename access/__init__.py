"""Projects, roles and API keys: who a caller is (``grants``), run-time keys (``key_store``), the
gateway's lookup of both (``keyring``) and the audit log (``audit``)."""
