"""Extension points of the pool pages for the apps built on xenpools.

xenpools imports none of those apps (backups depends on xenpools, never the other way round):
an app registers here at startup (its AppConfig.ready) and its templates fill the blocks of
ours, as backups/vm_detail.html does for the VM page. The VM list asks each registered
extension to narrow the listed VMs (its own filters) and to decorate the VMs of the page
(its own columns); templates/<app>/vm_list.html extends xenpools/vm_list.html for the cells.
"""


class VMListExtension:
    """Base class: override what the extension needs."""

    def filter_queryset(self, view, queryset):
        """The VM queryset narrowed by the extension's own GET parameters."""
        return queryset

    def context(self, view, vms) -> dict:
        """Extra context for the page; `vms` are the VMs shown on it (decorate them here)."""
        return {}


_vm_list_extensions: list[VMListExtension] = []


def register_vm_list_extension(extension: VMListExtension) -> None:
    if not any(type(existing) is type(extension) for existing in _vm_list_extensions):
        _vm_list_extensions.append(extension)


def vm_list_extensions() -> list[VMListExtension]:
    return list(_vm_list_extensions)
