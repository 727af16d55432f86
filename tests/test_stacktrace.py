from __future__ import annotations

import random

import pytest

from rcahook.rca.stacktrace import Frame, RepoPathIndex, map_frames, parse_stack_trace

# All traces below were written for these tests; paths and names are invented.


def where(frames: list[Frame]) -> list[tuple[str | None, int | None, str | None]]:
    return [(f.path, f.line, f.function) for f in frames]


PYTHON = """\
2024-05-01 12:00:03,512 ERROR runner: test harness crashed
Traceback (most recent call last):
  File "/usr/lib/python3/dist-packages/mesonbuild/mesonmain.py", line 194, in run
    return options.run_func(options)
  File "/usr/lib/python3/dist-packages/mesonbuild/mtest.py", line 2101, in run
    return th.doit()
           ^^^^^^^^^
  File "/usr/lib/python3/dist-packages/mesonbuild/mtest.py", line 1877, in doit
    self.run_tests(runners)
KeyError: 'timeout_multiplier'
"""


def test_python_traceback_innermost_first():
    assert where(parse_stack_trace(PYTHON)) == [
        ("/usr/lib/python3/dist-packages/mesonbuild/mtest.py", 1877, "doit"),
        ("/usr/lib/python3/dist-packages/mesonbuild/mtest.py", 2101, "run"),
        ("/usr/lib/python3/dist-packages/mesonbuild/mesonmain.py", 194, "run"),
    ]


def test_python_frame_keeps_raw_line():
    frame = parse_stack_trace(PYTHON)[0]
    assert frame.raw == '  File "/usr/lib/python3/dist-packages/mesonbuild/mtest.py", line 1877, in doit'


PYTHON_CHAINED = """\
Traceback (most recent call last):
  File "/srv/app/billing/invoice.py", line 40, in total
    return sum(line.amount for line in self.lines)
  File "/srv/app/billing/invoice.py", line 40, in <genexpr>
    return sum(line.amount for line in self.lines)
TypeError: unsupported operand type(s) for +: 'int' and 'NoneType'

The above exception was the direct cause of the following exception:

Traceback (most recent call last):
  File "/srv/app/api/views.py", line 88, in post_invoice
    amount = invoice.total()
  File "/srv/app/billing/invoice.py", line 43, in total
    raise InvoiceError("cannot total invoice") from exc
billing.invoice.InvoiceError: cannot total invoice
"""


def test_python_chain_root_cause_first_each_block_reversed():
    assert where(parse_stack_trace(PYTHON_CHAINED)) == [
        ("/srv/app/billing/invoice.py", 40, "<genexpr>"),
        ("/srv/app/billing/invoice.py", 40, "total"),
        ("/srv/app/billing/invoice.py", 43, "total"),
        ("/srv/app/api/views.py", 88, "post_invoice"),
    ]


def test_python_pseudo_files_have_no_path():
    trace = """\
Traceback (most recent call last):
  File "<stdin>", line 1, in <module>
  File "<frozen runpy>", line 88, in _run_code
  File "C:\\work\\tool\\cli.py", line 12, in main
ValueError: x
"""
    assert where(parse_stack_trace(trace)) == [
        ("C:\\work\\tool\\cli.py", 12, "main"),
        (None, 88, "_run_code"),
        (None, 1, "<module>"),
    ]


def test_python_exception_group_prefixes():
    trace = """\
  + Exception Group Traceback (most recent call last):
  |   File "/srv/app/jobs/fanout.py", line 21, in run_all
  |     async with asyncio.TaskGroup() as tg:
  | ExceptionGroup: unhandled errors in a TaskGroup (1 sub-exception)
  +-+---------------- 1 ----------------
    | Traceback (most recent call last):
    |   File "/srv/app/jobs/fetch.py", line 9, in fetch
    |     raise ConnectionError("reset")
    | ConnectionError: reset
    +------------------------------------
"""
    assert where(parse_stack_trace(trace)) == [
        ("/srv/app/jobs/fanout.py", 21, "run_all"),
        ("/srv/app/jobs/fetch.py", 9, "fetch"),
    ]


PYTEST = """\
___________________________ test_roundtrip ___________________________

    def test_roundtrip():
>       assert decode(encode(b"abc")) == b"abc"

tests/test_codec.py:14:
_ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _
src/codec/core.py:52: in decode
    return _inflate(data)[::-1]
src/codec/core.py:31: IndexError
"""


def test_pytest_locations_reversed():
    assert where(parse_stack_trace(PYTEST)) == [
        ("src/codec/core.py", 31, None),
        ("src/codec/core.py", 52, "decode"),
    ]


JAVA = """\
2024-05-01 12:00:03.101 ERROR [http-nio-8080-exec-3] o.a.c.c.C.[.[.[/].[dispatcherServlet] : Servlet failed
org.springframework.web.util.NestedServletException: Request processing failed
\tat org.springframework.web.servlet.FrameworkServlet.processRequest(FrameworkServlet.java:1014)
\tat com.acme.shop.web.CartController.checkout(CartController.java:77)
\tat java.base/java.lang.Thread.run(Thread.java:833)
Caused by: com.acme.shop.pricing.PricingException: no price for SKU-12
\tat com.acme.shop.pricing.PriceBook.lookup(PriceBook.java:58)
\tat com.acme.shop.pricing.PriceBook$Cache.get(PriceBook.java:120)
\t... 2 more
Caused by: java.lang.NullPointerException: Cannot invoke "java.math.BigDecimal.scale()"
\tat com.acme.shop.pricing.Money.round(Money.java:33)
\tat jdk.internal.reflect.NativeMethodAccessorImpl.invoke0(Native Method)
\t... 4 more
"""


def test_java_chain_root_cause_first():
    assert where(parse_stack_trace(JAVA)) == [
        ("com/acme/shop/pricing/Money.java", 33, "com.acme.shop.pricing.Money.round"),
        (None, None, "jdk.internal.reflect.NativeMethodAccessorImpl.invoke0"),
        ("com/acme/shop/pricing/PriceBook.java", 58, "com.acme.shop.pricing.PriceBook.lookup"),
        ("com/acme/shop/pricing/PriceBook.java", 120, "com.acme.shop.pricing.PriceBook$Cache.get"),
        ("org/springframework/web/servlet/FrameworkServlet.java", 1014,
         "org.springframework.web.servlet.FrameworkServlet.processRequest"),
        ("com/acme/shop/web/CartController.java", 77, "com.acme.shop.web.CartController.checkout"),
        ("java/lang/Thread.java", 833, "java.lang.Thread.run"),
    ]


def test_java_separate_traces_keep_printed_order():
    trace = """\
java.lang.IllegalStateException: first
\tat com.acme.A.one(A.java:1)
\tat com.acme.A.two(A.java:2)
12:00:05 WARN something else happened
java.lang.IllegalArgumentException: second
\tat com.acme.B.three(B.java:3)
"""
    assert [f.line for f in parse_stack_trace(trace)] == [1, 2, 3]


def test_java_logback_packaging_suffix_and_default_package():
    trace = """\
java.lang.ArithmeticException: / by zero
\tat Main.divide(Main.java:9) ~[app.jar:1.4.2]
\tat com.acme.Report.lambda$render$0(Report.kt:41) [app.jar:1.4.2]
\tat com.acme.Report.render(Unknown Source)
\t... 7 common frames omitted
"""
    assert where(parse_stack_trace(trace)) == [
        ("Main.java", 9, "Main.divide"),
        ("com/acme/Report.kt", 41, "com.acme.Report.lambda$render$0"),
        (None, None, "com.acme.Report.render"),
    ]


GO = """\
panic: runtime error: invalid memory address or nil pointer dereference
[signal SIGSEGV: segmentation violation code=0x1 addr=0x18 pc=0x6b1c2e]

goroutine 37 [running]:
github.com/acme/ledger/internal/store.(*Pool).Acquire(0x0, {0x8a1f40, 0xc0001a2000})
\t/home/ci/work/ledger/internal/store/pool.go:88 +0x4e
github.com/acme/ledger/internal/api.(*Handler).postEntry(0xc000124a80, {0x8a3b28, 0xc0002b6000}, 0xc0002a4100)
\t/home/ci/work/ledger/internal/api/entries.go:142 +0x1b3
net/http.HandlerFunc.ServeHTTP(...)
\t/usr/local/go/src/net/http/server.go:2136
created by net/http.(*Server).Serve in goroutine 1
\t/usr/local/go/src/net/http/server.go:3285 +0x4b4
exit status 2
"""


def test_go_panic():
    frames = parse_stack_trace(GO)
    assert where(frames) == [
        ("/home/ci/work/ledger/internal/store/pool.go", 88,
         "github.com/acme/ledger/internal/store.(*Pool).Acquire"),
        ("/home/ci/work/ledger/internal/api/entries.go", 142,
         "github.com/acme/ledger/internal/api.(*Handler).postEntry"),
        ("/usr/local/go/src/net/http/server.go", 2136, "net/http.HandlerFunc.ServeHTTP"),
        ("/usr/local/go/src/net/http/server.go", 3285, "net/http.(*Server).Serve"),
    ]
    assert frames[0].raw.endswith("\t/home/ci/work/ledger/internal/store/pool.go:88 +0x4e")


NODE = """\
/srv/shop/node_modules/express/lib/router/index.js:646
TypeError: Cannot read properties of undefined (reading 'id')
    at cartTotal (/srv/shop/src/cart/total.js:27:31)
    at Array.map (<anonymous>)
    at Object.<anonymous> (/srv/shop/src/routes/checkout.js:12:18)
    at /srv/shop/src/routes/index.js:5:3
    at async Promise.all (index 0)
    at Layer.handle [as handle_request] (/srv/shop/node_modules/express/lib/router/layer.js:95:5)
    at process.processTicksAndRejections (node:internal/process/task_queues:95:5)
    at async main (file:///srv/shop/src/main.mjs:40:7)
"""


def test_node_v8_frames():
    assert where(parse_stack_trace(NODE)) == [
        ("/srv/shop/src/cart/total.js", 27, "cartTotal"),
        ("/srv/shop/src/routes/checkout.js", 12, "Object.<anonymous>"),
        ("/srv/shop/src/routes/index.js", 5, None),
        ("/srv/shop/node_modules/express/lib/router/layer.js", 95, "Layer.handle [as handle_request]"),
        (None, 95, "process.processTicksAndRejections"),
        ("file:///srv/shop/src/main.mjs", 40, "async main"),
    ]


def test_firefox_frames():
    trace = """\
renderRow@https://shop.example.test/static/js/table.js:118:21
Table/<.render@https://shop.example.test/static/js/table.js:64:9
@https://shop.example.test/static/js/main.js:3:1
contact me at ops@example.test:25 for details
"""
    assert where(parse_stack_trace(trace)) == [
        ("https://shop.example.test/static/js/table.js", 118, "renderRow"),
        ("https://shop.example.test/static/js/table.js", 64, "Table/<.render"),
        ("https://shop.example.test/static/js/main.js", 3, None),
    ]


GDB = """\
Program received signal SIGSEGV, Segmentation fault.
0x0000555555571a2d in parse_rtattr_flags (tb=0x7fffffffd0d0, max=32, rta=0x0, len=12, flags=0) at lib/libnetlink.c:1512
1512\t\ttb[rta->rta_type & ~flags] = rta;
(gdb) bt
#0  0x0000555555571a2d in parse_rtattr_flags (tb=0x7fffffffd0d0, max=32, rta=0x0, len=12, flags=0) at lib/libnetlink.c:1512
#1  0x00005555555640b1 in print_addrinfo (n=0x7fffffffd1f0, arg=0x7ffff7f9a6a0 <_IO_2_1_stdout_>) at ipaddress.c:1563
#2  main (argc=3, argv=0x7fffffffe4b8) at ip.c:329
#3  0x00007ffff7dd9d90 in __libc_start_call_main () from /lib/x86_64-linux-gnu/libc.so.6
#4  0x00007ffff7dd9e40 in ?? ()
"""


def test_gdb_backtrace():
    assert where(parse_stack_trace(GDB)) == [
        ("lib/libnetlink.c", 1512, "parse_rtattr_flags"),
        ("ipaddress.c", 1563, "print_addrinfo"),
        ("ip.c", 329, "main"),
        (None, None, "__libc_start_call_main"),
    ]


def test_gdb_cpp_frame():
    trace = ("#5  0x000055555555a1f2 in std::vector<int, std::allocator<int> >::_M_range_check "
             "(this=0x7fffffffd8e0, __n=7) at /usr/include/c++/12/bits/stl_vector.h:1073")
    assert where(parse_stack_trace(trace)) == [
        ("/usr/include/c++/12/bits/stl_vector.h", 1073,
         "std::vector<int, std::allocator<int> >::_M_range_check"),
    ]


ASAN = """\
=================================================================
==48213==ERROR: AddressSanitizer: heap-buffer-overflow on address 0x602000000034 at pc 0x55d0c8a1b2c3 bp 0x7ffd4e1f5a10 sp 0x7ffd4e1f5a08
READ of size 4 at 0x602000000034 thread T0
    #0 0x55d0c8a1b2c3 in parse_rtattr_flags /home/ci/build/iproute2/lib/libnetlink.c:1512:17
    #1 0x55d0c8a1c0aa in print_linkinfo /home/ci/build/iproute2/ip/ipaddress.c:1088:3
    #2 0x7f2a1b229d8f in __libc_start_call_main csu/../sysdeps/nptl/libc_start_call_main.h:58:16
    #3 0x7f2a1b229e3f in __libc_start_main (/lib/x86_64-linux-gnu/libc.so.6+0x29e3f) (BuildId: 4f7b0c955c3d81d7cac1501a2498b69d1d82bfe7)
    #4 0x55d0c8a0f0e4 in _start (/home/ci/build/iproute2/ip/ip+0x1d0e4)

0x602000000034 is located 0 bytes after 4-byte region [0x602000000030,0x602000000034)
allocated by thread T0 here:
    #0 0x7f2a1b4b4887 in __interceptor_malloc ../../../../src/libsanitizer/asan/asan_malloc_linux.cpp:145
    #1 0x55d0c8a1a911 in rtnl_talk /home/ci/build/iproute2/lib/libnetlink.c:1021:9

SUMMARY: AddressSanitizer: heap-buffer-overflow /home/ci/build/iproute2/lib/libnetlink.c:1512:17 in parse_rtattr_flags
"""


def test_asan_report_keeps_stacks_in_printed_order():
    assert where(parse_stack_trace(ASAN)) == [
        ("/home/ci/build/iproute2/lib/libnetlink.c", 1512, "parse_rtattr_flags"),
        ("/home/ci/build/iproute2/ip/ipaddress.c", 1088, "print_linkinfo"),
        ("csu/../sysdeps/nptl/libc_start_call_main.h", 58, "__libc_start_call_main"),
        (None, None, "__libc_start_main"),
        (None, None, "_start"),
        ("../../../../src/libsanitizer/asan/asan_malloc_linux.cpp", 145, "__interceptor_malloc"),
        ("/home/ci/build/iproute2/lib/libnetlink.c", 1021, "rtnl_talk"),
    ]


def test_lldb_and_valgrind():
    trace = """\
* thread #1, queue = 'com.apple.main-thread', stop reason = EXC_BAD_ACCESS (code=1, address=0x0)
  * frame #0: 0x0000000100003f2c demo`list_push(list=0x0000000000000000, v=3) at list.c:41:15
    frame #1: 0x0000000100003e90 demo`main at main.c:12:5
    frame #2: 0x00000001a2b1d0e0 libsystem_kernel.dylib`__pthread_kill + 8
==9120== Invalid read of size 8
==9120==    at 0x10915C: list_pop (list.c:57)
==9120==    by 0x1091E2: main (main.c:20)
==9120==    by 0x48A4D8F: (below main) (libc_start_call_main.h:58)
==9120==  Address 0x0 is not stack'd, malloc'd or (recently) free'd
"""
    assert where(parse_stack_trace(trace)) == [
        ("list.c", 41, "list_push"),
        ("main.c", 12, "main"),
        (None, None, "__pthread_kill"),
        ("list.c", 57, "list_pop"),
        ("main.c", 20, "main"),
        ("libc_start_call_main.h", 58, "(below main)"),
    ]


RUST = """\
thread 'main' panicked at src/parser/header.rs:42:9:
index out of bounds: the len is 3 but the index is 3
stack backtrace:
   0: rust_begin_unwind
             at /rustc/90b35a6239c3d8bdabc530a6a0816f7ff89a0aaf/library/std/src/panicking.rs:645:5
   1: core::panicking::panic_bounds_check
             at /rustc/90b35a6239c3d8bdabc530a6a0816f7ff89a0aaf/library/core/src/panicking.rs:208:5
   2: tidewater::parser::header::parse_header::h3b5c2a9e1f0d7c64
             at ./src/parser/header.rs:42:9
   3: tidewater::main
             at ./src/main.rs:17:5
   4: core::ops::function::FnOnce::call_once
note: Some details are omitted, run with `RUST_BACKTRACE=full` for a verbose backtrace.
"""


def test_rust_panic_and_backtrace():
    frames = parse_stack_trace(RUST)
    assert where(frames) == [
        ("src/parser/header.rs", 42, None),
        ("/rustc/90b35a6239c3d8bdabc530a6a0816f7ff89a0aaf/library/std/src/panicking.rs", 645,
         "rust_begin_unwind"),
        ("/rustc/90b35a6239c3d8bdabc530a6a0816f7ff89a0aaf/library/core/src/panicking.rs", 208,
         "core::panicking::panic_bounds_check"),
        ("./src/parser/header.rs", 42, "tidewater::parser::header::parse_header"),
        ("./src/main.rs", 17, "tidewater::main"),
        (None, None, "core::ops::function::FnOnce::call_once"),
    ]
    assert frames[3].raw.splitlines()[1].strip() == "at ./src/parser/header.rs:42:9"


def test_rust_old_panic_format():
    line = "thread 'worker-2' panicked at 'called `Option::unwrap()` on a `None` value', src/queue.rs:88:30"
    assert where(parse_stack_trace(line)) == [("src/queue.rs", 88, None)]


def test_ansi_colours_and_crlf_are_ignored():
    coloured = (
        "\x1b[31mTraceback (most recent call last):\x1b[0m\r\n"
        '  File \x1b[35m"/srv/app/jobs/run.py"\x1b[0m, line \x1b[35m7\x1b[0m, in \x1b[35mmain\x1b[0m\r\n'
        "\x1b[1;31mRuntimeError\x1b[0m: boom\r\n"
    )
    frames = parse_stack_trace(coloured)
    assert where(frames) == [("/srv/app/jobs/run.py", 7, "main")]
    assert "\x1b" not in frames[0].raw


def test_noise_gives_no_frames():
    noise = """\
# Release notes
#12 was fixed in this release (see the changelog)
Look at the docs for details.
1: first item
at least 3 retries happened
user@example.test:25 refused the connection
"""
    assert parse_stack_trace(noise) == []
    assert parse_stack_trace("") == []


def test_mixed_formats_keep_printed_order():
    frames = parse_stack_trace(GO + "\n" + PYTHON)
    assert frames[0].path.endswith("pool.go")
    assert frames[4].path.endswith("mtest.py") and frames[4].line == 1877


# --- map_frames ------------------------------------------------------------------------

REPO = [
    "ip/ipaddress.c",
    "ip/ip.c",
    "lib/libnetlink.c",
    "include/libnetlink.h",
    "mesonbuild/mtest.py",
    "mesonbuild/mesonmain.py",
    "mesonbuild/__init__.py",
    "tools/__init__.py",
    "src/main/java/com/acme/shop/pricing/PriceBook.java",
    "src/main/java/com/acme/shop/pricing/Money.java",
    "app/src/main/kotlin/Report.kt",
    "internal/store/pool.go",
    "src/main.rs",
    "examples/demo/src/main.rs",
    "src/parser/header.rs",
    "a/util.c",
    "b/util.c",
]


def mapped(path: str | None, repo: list[str] = REPO) -> str | None:
    frames = map_frames([Frame(path, 1, "f", "raw")], repo)
    return frames[0].path if frames else None


@pytest.mark.parametrize(
    ("printed", "expected"),
    [
        ("/home/ci/build/src/ip/ipaddress.c", "ip/ipaddress.c"),
        ("/usr/lib/python3/site-packages/mesonbuild/mtest.py", "mesonbuild/mtest.py"),
        ("lib/libnetlink.c", "lib/libnetlink.c"),
        ("ipaddress.c", "ip/ipaddress.c"),  # a bare file name, unique in the repository
        ("com/acme/shop/pricing/PriceBook.java", "src/main/java/com/acme/shop/pricing/PriceBook.java"),
        ("com/acme/Report.kt", "app/src/main/kotlin/Report.kt"),  # JVM: file name fallback
        ("/home/ci/work/ledger/internal/store/pool.go", "internal/store/pool.go"),
        ("./src/main.rs", "src/main.rs"),  # exact beats examples/demo/src/main.rs
        ("/home/u/proj/src/main.rs", "src/main.rs"),
        ("C:\\ci\\build\\IP\\IPADDRESS.C", "ip/ipaddress.c"),  # Windows: case-insensitive
        ("file:///srv/x/lib/libnetlink.c", "lib/libnetlink.c"),
        ("https://cdn.example.test/build/ip/ipaddress.c?v=3", "ip/ipaddress.c"),
        ("/usr/lib/python3.11/json/__init__.py", None),  # only __init__.py agrees, ambiguous
        ("/usr/include/stdio.h", None),
        ("/opt/other/util.c", None),  # a/util.c or b/util.c: do not guess
        ("util.c", None),
        ("/usr/include/netlink/libnetlink.h", None),  # one component only, absolute path
        ("", None),
        (None, None),
    ],
)
def test_map_frame_paths(printed, expected):
    assert mapped(printed) == expected


def test_map_frames_keeps_order_and_drops_unmapped():
    frames = parse_stack_trace(ASAN)
    result = map_frames(frames, REPO)
    assert where(result) == [
        ("lib/libnetlink.c", 1512, "parse_rtattr_flags"),
        ("ip/ipaddress.c", 1088, "print_linkinfo"),
        ("lib/libnetlink.c", 1021, "rtnl_talk"),
    ]
    assert result[0].raw == frames[0].raw


def test_map_frames_nothing_in_repository():
    assert map_frames(parse_stack_trace(NODE), REPO) == []


def test_map_frames_partial_suffix_of_two_components():
    # Installed layout differs from the repository's (src/ layout): two components agree.
    assert mapped("/venv/lib/site-packages/codec/core.py", ["src/codec/core.py"]) == "src/codec/core.py"
    assert mapped("/venv/lib/site-packages/other/core.py", ["src/codec/core.py"]) is None


def test_index_resolves_many():
    index = RepoPathIndex(REPO)
    assert index.resolve("/x/ip/ip.c") == "ip/ip.c"
    assert index.resolve("/x/ip/nope.c") is None


def test_windows_paths_and_log_prefixes():
    trace = """\
TypeError: x is undefined
    at render (C:\\app\\src\\view.js:10:5)
goroutine 1 [running]:
main.main()
\tC:/Users/ci/go/src/app/main.go:12 +0x1d
2024-05-01T12:00:00Z app[123]: \tat com.acme.Svc.run(Svc.java:10)
"""
    frames = parse_stack_trace(trace)
    assert where(frames) == [
        ("C:\\app\\src\\view.js", 10, "render"),
        ("C:/Users/ci/go/src/app/main.go", 12, "main.main"),
        ("com/acme/Svc.java", 10, "com.acme.Svc.run"),
    ]
    repo = ["src/view.js", "main.go", "src/main/java/com/acme/Svc.java"]
    assert [f.path for f in map_frames(frames, repo)] == repo


def test_huge_lines_are_skipped():
    assert parse_stack_trace("    at " + "f" * 20_000 + " (/x/a.js:1:2)") == []
    assert len(parse_stack_trace("    at " + "f" * 2_000 + " (/x/a.js:1:2)")) == 1


def test_garbage_never_raises():
    rng = random.Random(3)
    fragments = [
        "at ", "#0 ", "0x1f in ", "(", ")", ":", "12", 'File "', '", line ', ", in ", "\t", " ",
        "a.c", "x.go", "@", "/", "\\", "panicked at ", "stack backtrace:", "   0: ", "Caused by: ",
        "Traceback (most recent call last):", "frame #1: 0x1 ", "==1==    at 0x1: ", "\x1b[31m",
        "goroutine 1 [", "created by ", "... 3 more", "'", "\n",
    ]
    for _ in range(500):
        sample = "".join(rng.choice(fragments) for _ in range(rng.randint(0, 60)))
        for frame in parse_stack_trace(sample):
            assert frame.line is None or frame.line >= 0


# --- caps (issue 10: a 5 MB trace of 50,947 frames) --------------------------------------

def _deep_python(frames: int) -> str:
    lines = ["Traceback (most recent call last):"]
    for i in range(frames):
        lines += [f'  File "/srv/app/pkg/mod{i % 7}.py", line {i % 300 + 1}, in func_{i}',
                  f"    return func_{i + 1}(value)"]
    return "\n".join(lines + ["RecursionError: maximum recursion depth exceeded"]) + "\n"


def test_parse_capped_keeps_the_crash_site_and_the_entry():
    from rcahook.rca.stacktrace import MAX_FRAMES, OUTER_FRAMES, parse_capped

    trace = parse_capped(_deep_python(1000))
    assert trace.found == 1000 and len(trace.frames) == MAX_FRAMES and trace.frames_dropped == 800
    functions = [f.function for f in trace.frames]
    assert functions[0] == "func_999"  # innermost: where it crashed
    assert functions[-1] == "func_0"  # outermost: the entry point
    assert functions[MAX_FRAMES - OUTER_FRAMES - 1] == f"func_{999 - (MAX_FRAMES - OUTER_FRAMES - 1)}"
    assert functions[MAX_FRAMES - OUTER_FRAMES] == f"func_{OUTER_FRAMES - 1}"
    assert "1,000 frames" in trace.note and "800 dropped" in trace.note


def test_short_trace_is_kept_whole():
    from rcahook.rca.stacktrace import parse_capped

    trace = parse_capped(PYTHON)
    assert trace.text == PYTHON and trace.frames_dropped == 0 and trace.chars_left_out == 0
    assert trace.note is None and where(trace.frames) == where(parse_stack_trace(PYTHON))


def _without_cut_lines(text: str) -> str:
    return "".join(line for line in text.splitlines(keepends=True) if not line.startswith("[rcahook: "))


def test_cut_text_says_what_was_left_out_and_is_stable():
    import io

    from rcahook.rca.stacktrace import cut_middle, left_out, parse_capped, read_capped

    text = _deep_python(60_000)  # about 5 MB
    kept = cut_middle(text, 40_000)
    assert len(kept) <= 40_000 and kept.startswith("Traceback") and kept.endswith("exceeded\n")
    assert len(_without_cut_lines(kept)) + left_out(kept) == len(text)
    assert cut_middle(kept, 40_000) == kept  # cutting again changes nothing
    assert parse_stack_trace("[rcahook: 12 characters of this stack trace left out here]") == []
    # reading from a stream holds at most the cap, and counts what it skipped
    read = read_capped(io.StringIO(text), 100_000)
    assert len(read) <= 100_000 and read.endswith("exceeded\n")
    assert len(_without_cut_lines(read)) + left_out(read) == len(text)
    # a cut of a cut counts both
    trace = parse_capped(read)
    assert len(trace.text) <= 40_000 and len(_without_cut_lines(trace.text)) + trace.chars_left_out == len(text)
