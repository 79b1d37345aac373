"""The emulated product version and everything that depends on it (notes sections 3, 4, 6)."""

from dataclasses import dataclass

# (product version prefix, API major, API minor, xapi version) from the notes' table.
_API_VERSIONS = [
    ((7, 0), 2, 5, "1.110"),
    ((7, 1), 2, 6, "1.120"),
    ((7, 2), 2, 7, "1.130"),
    ((7, 6), 2, 11, "1.150"),
    ((8, 0), 2, 12, "1.160"),
    ((8, 1), 2, 14, "1.214"),
    ((8, 2), 2, 15, "1.249"),
    ((8, 3), 2, 21, "24.39"),
]


@dataclass(frozen=True)
class Product:
    version: str = "8.3.0"

    @property
    def parts(self) -> tuple[int, int]:
        major, minor = (self.version.split(".") + ["0"])[:2]
        return int(major), int(minor)

    def _row(self):
        chosen = _API_VERSIONS[0]
        for row in _API_VERSIONS:
            if self.parts >= row[0]:
                chosen = row
        return chosen

    @property
    def api_version(self) -> tuple[int, int]:
        _, major, minor, _ = self._row()
        return major, minor

    @property
    def xapi_version(self) -> str:
        return self._row()[3]

    @property
    def xapi_build(self) -> tuple[int, int]:
        """xapi's own version (Xapi_version.xapi_version_major/minor, e.g. 1.249 or 24.39):
        what an XVA's ova.xml carries as version.xapi_major/minor and what import compares."""
        major, minor = self.xapi_version.split(".")[:2]
        return int(major), int(minor)

    @property
    def xva_checksum(self) -> str:
        """XVA block checksum: SHA-1 `.checksum` up to 8.0, XXH64 `.xxhash` from 8.1."""
        return "xxhash" if self.parts >= (8, 1) else "sha1"

    @property
    def has_snapshot_with_quiesce(self) -> bool:
        return self.parts < (8, 1)

    @property
    def brand(self) -> str:
        return "XCP-ng" if self.parts >= (8, 0) else "XenServer"

    def software_version(self, hostname: str) -> dict:
        major, minor = self.api_version
        xapi = self.xapi_version
        return {
            "product_version": self.version,
            "product_version_text": "%d.%d" % self.parts,
            "product_version_text_short": "%d.%d" % self.parts,
            "platform_name": "XCP",
            "platform_version": "3.4.0" if self.parts >= (8, 3) else "3.%d.0" % min(self.parts[1], 9),
            "product_brand": self.brand,
            "build_number": self.version,
            "git_id": "0",
            "hostname": hostname,
            "date": "2024-10-01",
            "dbv": "0.0.1",
            "xapi": xapi,
            "xapi_build": xapi + ".0",
            "xen": "4.17.5",
            "linux": "4.19.0+1",
            "xencenter_min": "%d.%d" % (major, minor),
            "xencenter_max": "%d.%d" % (major, minor),
            "network_backend": "openvswitch",
            "db_schema": "5.%d" % minor,
        }
