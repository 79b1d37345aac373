"""Transfer formats between a XenServer / XCP-ng pool and the backup pipeline.

One module per format, plain Python (no Django, no XenAPI session):

- ``xva``: the XVA tar stream of ``GET /export`` / ``PUT /import`` (reader, writer, ova.xml)
- ``nbd``: a read-only NBD client for ``VDI.get_nbd_info`` exports (xapi-nbd compatible)
- ``vhd``: dynamic / differencing VHD streams of ``/export_raw_vdi?format=vhd``
- ``cbt``: the changed-block bitmaps of ``VDI.list_changed_blocks``

Readers yield ``(offset, data)`` pairs; each module raises its own error class
(``XvaError``, ``NbdError``, ``VhdError``, ``CbtError``) whose message names what was wrong.
"""
