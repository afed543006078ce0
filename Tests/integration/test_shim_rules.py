"""The after-fork rules of CBerth, checked on the objects the build made: the code that runs
between clone and execve (shim.c), the hook runner's forked child (hooks.c, which init also
runs) and the socket helpers init calls (sys.c) call no allocator and no stdio. A fork of
a Swift process may hold the allocator's or stdio's locks at the moment of the fork; a call
to either could deadlock the child or corrupt what it shares with nobody."""
import os
import subprocess

from conftest import BERTH

FORBIDDEN = {
    "malloc", "calloc", "realloc", "free", "reallocarray", "posix_memalign", "aligned_alloc",
    "strdup", "strndup", "asprintf", "vasprintf", "opendir", "fdopendir", "closedir", "qsort",
    "printf", "fprintf", "sprintf", "snprintf", "vsnprintf", "vfprintf", "dprintf", "puts",
    "fputs", "fputc", "putchar", "fopen", "fdopen", "fclose", "fwrite", "fread", "fflush",
    "perror", "getenv", "setenv", "setlocale", "strerror", "syslog",
}


def test_after_fork_objects_call_no_allocator_or_stdio():
    objects = os.path.join(os.path.dirname(os.path.realpath(BERTH)), "CBerth.build")
    for name in ("shim.c.o", "hooks.c.o", "sys.c.o"):
        path = os.path.join(objects, name)
        assert os.path.exists(path), f"{path}: BERTH should be a SwiftPM build's binary (Scripts/build)"
        undefined = subprocess.run(["nm", "-u", path], capture_output=True, text=True, check=True).stdout.split()
        called = {s.split("@")[0] for s in undefined if s != "U"}
        assert not called & FORBIDDEN, f"{name} calls {sorted(called & FORBIDDEN)}"
        assert "fork" not in called or name == "hooks.c.o"
