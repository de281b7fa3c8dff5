"""The one fake store of the tests: a memory store that fails the writes a test chooses, as an outage would."""
from pyzdb.errors import StoreError
from pyzdb.storage.memory import MemoryStore


class FailingStore(MemoryStore):
    """A memory store that raises ``StoreError`` on a chosen write.

    ``fail_set`` is a predicate on the items of a ``set_bulk`` (``lambda items: True`` fails
    every one); ``fail_remove`` fails every ``remove_bulk``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.fail_set = None
        self.fail_remove = False

    def set_bulk(self, items):
        if self.fail_set is not None and self.fail_set(items):
            raise StoreError("injected store failure")
        super().set_bulk(items)

    def remove_bulk(self, keys):
        if self.fail_remove:
            raise StoreError("injected store failure")
        super().remove_bulk(keys)

