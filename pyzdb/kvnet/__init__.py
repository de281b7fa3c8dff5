"""What the Kyoto Tycoon and Tokyo Tyrant clients share: the connection pool, value serializers, the mapping interface."""
