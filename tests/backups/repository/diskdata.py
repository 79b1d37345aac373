"""Generated disk content for the repository tests: zero, text and random regions."""
import random

WORDS = ("backup restore chunk manifest virtual machine pool host storage network "
         "snapshot export import verify prune garbage collect encrypt compress").split()


def text_block(size, seed=0):
    rng = random.Random(seed)
    out = bytearray()
    while len(out) < size:
        out += (" ".join(rng.choice(WORDS) for _ in range(12)) + f" {rng.random()}\n").encode()
    return bytes(out[:size])


def mixed_disk(size, chunk_size, seed=1):
    """A disk whose chunk-sized regions cycle zero, text and random content (same seed,
    same disk)."""
    rng = random.Random(seed)
    disk = bytearray(size)
    for index, start in enumerate(range(0, size, chunk_size)):
        end = min(size, start + chunk_size)
        kind = index % 3
        if kind == 1:
            disk[start:end] = text_block(end - start, seed=rng.random())
        elif kind == 2:
            disk[start:end] = rng.randbytes(end - start)
    return bytes(disk)


def write_disk(writer, key, data, *, piece=300_000, parent_chunks=None):
    """Feed a whole disk in odd-sized pieces (as a stream reader would) and finish it."""
    disk = writer.add_disk(key, len(data), parent_chunks=parent_chunks)
    for offset in range(0, len(data), piece):
        disk.write(offset, data[offset:offset + piece])
    disk.finish()
    return disk


def read_disk(repo, rp_id, key):
    return b"".join(data for _, data in repo.open_disk(rp_id, key).stream())


def stream_mixed_disk(size, block=1 << 20):
    """Yield (offset, block) of a generated disk without holding it: 40 % zeros, 30 % text,
    30 % random, each text block unique (so dedup does not hide the work)."""
    import os

    pool = text_block(4 * block + 4096, seed=7)
    zeros = bytes(block)
    for index, offset in enumerate(range(0, size, block)):
        n = min(block, size - offset)
        kind = index % 10
        if kind < 4:
            data = zeros[:n]
        elif kind < 7:
            start = (index * 4099) % (3 * block)
            data = (b"%016d" % index + pool[start:start + n])[:n]
        else:
            data = os.urandom(n)
        yield offset, data
