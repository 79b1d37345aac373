"""Remote device servers: worker clusters at other sites that own data stores (design.md
sections 4 and 9). models: the rows; registration: one-time tokens; sealing: the secrets a
device server may read; routing: which cluster runs a store's tasks, and waiting for a
device server that is down; runner: `manage.py device_server run`."""
