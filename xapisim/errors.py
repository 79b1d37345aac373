"""The XenAPI failure every handler raises: it becomes ``Status: Failure`` on the wire."""


class XapiError(Exception):
    def __init__(self, code: str, *params):
        self.details = [code, *(str(p) for p in params)]
        super().__init__(", ".join(self.details))

    @property
    def code(self) -> str:
        return self.details[0]


def handle_invalid(cls: str, ref: str) -> XapiError:
    return XapiError("HANDLE_INVALID", cls, ref)


def bad_power_state(vm: str, expected: str, actual: str) -> XapiError:
    # xapi writes power states lowercase in this error.
    return XapiError("VM_BAD_POWER_STATE", vm, expected.lower(), actual.lower())
