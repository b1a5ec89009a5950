"""etcd backup and restore phases; importing this package registers their implementations."""

from capstan.tasks.etcd import backup, restore
from capstan.tasks.etcd.backup import BACKUP_PHASES
from capstan.tasks.etcd.restore import RESTORE_PHASES

__all__ = ["BACKUP_PHASES", "RESTORE_PHASES", "backup", "restore"]
