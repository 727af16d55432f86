from __future__ import annotations

import json
import random
import textwrap

import pytest

from rcahook.codegraph.parse import (
    SUPPORTED_LANGUAGES,
    Definition,
    Import,
    ParsedFile,
    definitions_touching,
    language_for,
    parse_source,
)


def _src(text: str) -> bytes:
    return textwrap.dedent(text).lstrip("\n").encode()


def _defs(parsed: ParsedFile) -> list[tuple]:
    return [(d.name, d.qualname, d.kind, d.start, d.end) for d in parsed.definitions]


def _calls(parsed: ParsedFile) -> list[tuple]:
    assert {r.kind for r in parsed.references} <= {"call"}
    return [(r.name, r.line, r.scope, r.qualifier) for r in parsed.references]


PYTHON = _src('''
    import os.path
    import numpy as np
    from . import sibling
    from ..pkg.mod import helper as h, other
    from tools import *


    def top(x):
        return helper(x)


    @register("cmd")
    @other.decorate
    class Parser(Base):
        """Doc."""

        def parse_args(self, argv):
            self.reset()
            return os.path.join(*argv)

        @staticmethod
        def build():
            def inner():
                return Parser()
            return inner()

        class Options:
            pass


    async def fetch(url):
        import json
        await client.get(url)
''')

C = _src(r'''
    #include <stdio.h>
    #include "util/list.h"

    #define MAX_ITEMS 64
    #define SQUARE(x) \
    	((x) * (x))

    typedef unsigned long ulong;
    typedef int (*handler_fn)(int code);

    struct list_head {
    	struct list_head *next, *prev;
    };

    typedef struct {
    	int x;
    } point_t;

    union value {
    	int i;
    	float f;
    };

    enum color { RED, GREEN };

    static inline int *lookup(struct list_head *head, int key)
    {
    	return find_entry(head, key);
    }

    void (*get_handler(int sig))(int)
    {
    	dev->ops->notify(dev, sig);
    	return SQUARE(sig) ? NULL : NULL;
    }

    int old_style(a, b)
    int a;
    int b;
    {
    	return a + b;
    }

    #ifdef CONFIG_DEBUG
    static void debug_dump(void)
    {
    	printf("%d\n", MAX_ITEMS);
    }
    #endif
''')

CPP = _src('''
    #include <vector>
    #include "engine.hpp"

    namespace engine {

    template <typename T>
    class Queue : public Base {
    public:
        Queue() : size_(0) {}
        void push(const T &item) {
            items_.push_back(item);
        }

    private:
        struct Node { T value; };
        std::vector<T> items_;
    };

    int Scheduler::run(int steps) {
        auto *task = new Task(steps);
        std::sort(begin(), end());
        return helper(steps);
    }

    }  // namespace engine

    Scheduler::~Scheduler() {
        engine::shutdown();
    }
''')

GO = _src('''
    package server

    import (
    	"fmt"
    	log "example.com/app/internal/logging"
    )

    type Server struct {
    	addr string
    }

    type Handler interface {
    	Serve() error
    }

    type ID int

    func New(addr string) *Server {
    	return &Server{addr: addr}
    }

    func (s *Server) Start() error {
    	fmt.Println(s.addr)
    	log.Info("start")
    	return s.listen()
    }

    func (b Box[T]) Get() T {
    	return b.value
    }
''')

JAVA = _src('''
    package com.example.app;

    import java.util.List;
    import com.example.util.*;

    @Service
    public class OrderService extends Base {
        private final List<Order> orders;

        public OrderService() {
            this.orders = new ArrayList<>();
        }

        @Override
        public void place(Order order) {
            validate(order);
            orders.add(order);
            Audit.log("placed");
        }

        interface Listener {
            void onOrder(Order order);
        }

        enum Status { NEW, DONE }

        record Line(int qty) {}
    }
''')

JAVASCRIPT = _src('''
    const path = require('path');
    const { readFile } = require('./io');

    function load(name) {
      return readFile(path.join(__dirname, name));
    }

    module.exports.save = function (data) {
      store.put(data);
    };

    const api = {
      fetch: async (url) => request(url),
    };
''')

TYPESCRIPT = _src('''
    import React, { useState as useLocalState } from 'react';
    import * as util from './util';
    import type { Config } from '../config.js';
    export { format } from './format';
    const fs = require('fs');

    export interface Props {
      name: string;
    }

    export type Mode = 'a' | 'b';

    export enum Level { Low, High }

    export function render(props: Props) {
      return util.format(props.name);
    }

    export const handler = async (event: Event) => {
      await process(event);
    };

    export class Widget extends Base {
      private count = 0;
      onClick = () => {
        this.setState({ count: 1 });
      };

      render() {
        return new View(this.count);
      }
    }
''')

TSX = _src('''
    import { Button } from './Button';

    export default function App({ title }: { title: string }) {
      const onClick = () => track('click');
      return <Button onClick={onClick}>{format(title)}</Button>;
    }
''')

RUST = _src('''
    use std::collections::HashMap;
    use crate::store::{self, Store};
    use super::config::*;

    pub struct Cache<K> {
        map: HashMap<K, u32>,
    }

    pub enum Event {
        Hit,
        Miss,
    }

    pub trait Evict {
        fn evict(&mut self);
    }

    impl<K> Cache<K> {
        pub fn new() -> Self {
            Cache { map: HashMap::new() }
        }

        fn touch(&mut self) {
            self.map.clear();
            log_event!(Event::Hit);
        }
    }

    macro_rules! log_event {
        ($e:expr) => {};
    }

    mod tests {
        fn helper() {}
    }
''')

SAMPLES = {
    "a.py": PYTHON, "a.c": C, "a.cpp": CPP, "a.go": GO, "A.java": JAVA, "a.js": JAVASCRIPT,
    "a.ts": TYPESCRIPT, "a.tsx": TSX, "a.rs": RUST,
}


@pytest.mark.parametrize(("path", "lang"), [
    ("a/b.py", "python"), ("x.pyi", "python"), ("k.c", "c"), ("k.h", "c"), ("k.cc", "cpp"),
    ("k.cpp", "cpp"), ("k.cxx", "cpp"), ("k.hpp", "cpp"), ("k.hh", "cpp"), ("k.hxx", "cpp"),
    ("m.go", "go"), ("M.java", "java"), ("w.js", "javascript"), ("w.mjs", "javascript"),
    ("w.cjs", "javascript"), ("w.jsx", "javascript"), ("w.ts", "typescript"), ("w.mts", "typescript"),
    ("w.cts", "typescript"), ("w.tsx", "tsx"), ("lib.rs", "rust"), ("README.md", None),
    ("Makefile", None), ("dir.py/file", None),
])
def test_language_for(path, lang):
    assert language_for(path) == lang
    assert lang is None or lang in SUPPORTED_LANGUAGES


def test_unsupported_language_gives_none():
    assert parse_source("notes.txt", b"def f(): pass") is None


def test_python():
    parsed = parse_source("pkg/a.py", PYTHON)
    assert parsed.lang == "python"
    assert _defs(parsed) == [
        ("top", "top", "function", 8, 9),
        ("Parser", "Parser", "class", 12, 28),  # from the first decorator
        ("parse_args", "Parser.parse_args", "method", 17, 19),
        ("build", "Parser.build", "method", 21, 25),
        ("inner", "Parser.build.inner", "function", 23, 24),
        ("Options", "Parser.Options", "class", 27, 28),
        ("fetch", "fetch", "function", 31, 33),
    ]
    assert _calls(parsed) == [
        ("helper", 9, "top", None),
        ("register", 12, "Parser", None),
        ("reset", 18, "Parser.parse_args", "self"),
        ("join", 19, "Parser.parse_args", "os.path"),
        ("Parser", 24, "Parser.build.inner", None),
        ("inner", 25, "Parser.build", None),
        ("get", 33, "fetch", "client"),
    ]
    assert parsed.imports == (
        Import("os.path", (), 1),
        Import("numpy", (), 2),
        Import("", ("sibling",), 3, 1),
        Import("pkg.mod", ("helper", "other"), 4, 2),
        Import("tools", ("*",), 5),
        Import("json", (), 32),
    )


def test_c():
    parsed = parse_source("src/a.c", C)
    assert _defs(parsed) == [
        ("MAX_ITEMS", "MAX_ITEMS", "macro", 4, 4),
        ("SQUARE", "SQUARE", "macro", 5, 6),
        ("ulong", "ulong", "type", 8, 8),
        ("handler_fn", "handler_fn", "type", 9, 9),
        ("list_head", "list_head", "struct", 11, 13),
        ("point_t", "point_t", "type", 15, 17),
        ("value", "value", "union", 19, 22),
        ("color", "color", "enum", 24, 24),
        ("lookup", "lookup", "function", 26, 29),
        ("get_handler", "get_handler", "function", 31, 35),
        ("old_style", "old_style", "function", 37, 42),
        ("debug_dump", "debug_dump", "function", 45, 48),
    ]
    assert _calls(parsed) == [
        ("find_entry", 28, "lookup", None),
        ("notify", 33, "get_handler", "dev->ops"),
        ("SQUARE", 34, "get_handler", None),
        ("printf", 47, "debug_dump", None),
    ]
    assert parsed.imports == (Import("stdio.h", (), 1), Import("util/list.h", (), 2, 1))


def test_c_typedef_struct_names_are_not_nested():
    parsed = parse_source("a.h", b"typedef struct node {\n  int v;\n} node_t;\n")
    assert _defs(parsed) == [("node_t", "node_t", "type", 1, 3), ("node", "node", "struct", 1, 3)]


def test_c_macro_defined_functions_and_nested_conditionals():
    parsed = parse_source("k.c", _src('''
        SYSCALL_DEFINE2(close, unsigned int, fd, int, flags)
        {
        	return do_close(fd);
        }
        EXPORT_SYMBOL(close);

        #if defined(CONFIG_A)
        # ifdef CONFIG_B
        int probe(void) { return 0; }
        # else
        int probe(void) { return 1; }
        # endif
        #endif

        struct outer {
        	struct inner { int x; } in;
        };
    '''))
    assert _defs(parsed) == [
        ("close", "close", "function", 1, 4),
        ("probe", "probe", "function", 9, 9),
        ("probe", "probe", "function", 11, 11),
        ("outer", "outer", "struct", 15, 17),
        ("inner", "inner", "struct", 16, 16),
    ]
    assert _calls(parsed) == [
        ("SYSCALL_DEFINE2", 1, "close", None),
        ("do_close", 3, "close", None),
        ("EXPORT_SYMBOL", 5, None, None),
    ]


def test_cpp():
    parsed = parse_source("a.cpp", CPP)
    assert _defs(parsed) == [
        ("engine", "engine", "namespace", 4, 25),
        ("Queue", "engine.Queue", "class", 6, 17),  # from the template header
        ("Queue", "engine.Queue.Queue", "method", 9, 9),
        ("push", "engine.Queue.push", "method", 10, 12),
        ("Node", "engine.Queue.Node", "struct", 15, 15),
        ("run", "engine.Scheduler.run", "method", 19, 23),
        ("~Scheduler", "Scheduler.~Scheduler", "method", 27, 29),
    ]
    assert _calls(parsed) == [
        ("push_back", 11, "engine.Queue.push", "items_"),
        ("Task", 20, "engine.Scheduler.run", None),
        ("sort", 21, "engine.Scheduler.run", "std"),
        ("begin", 21, "engine.Scheduler.run", None),
        ("end", 21, "engine.Scheduler.run", None),
        ("helper", 22, "engine.Scheduler.run", None),
        ("shutdown", 28, "Scheduler.~Scheduler", "engine"),
    ]
    assert parsed.imports == (Import("vector", (), 1), Import("engine.hpp", (), 2, 1))


def test_go():
    parsed = parse_source("server/a.go", GO)
    assert _defs(parsed) == [
        ("Server", "Server", "struct", 8, 10),
        ("Handler", "Handler", "interface", 12, 14),
        ("ID", "ID", "type", 16, 16),
        ("New", "New", "function", 18, 20),
        ("Start", "Server.Start", "method", 22, 26),
        ("Get", "Box.Get", "method", 28, 30),
    ]
    assert _calls(parsed) == [
        ("Println", 23, "Server.Start", "fmt"),
        ("Info", 24, "Server.Start", "log"),
        ("listen", 25, "Server.Start", "s"),
    ]
    assert parsed.imports == (Import("fmt", (), 4), Import("example.com/app/internal/logging", ("log",), 5))


def test_java():
    parsed = parse_source("A.java", JAVA)
    assert _defs(parsed) == [
        ("OrderService", "OrderService", "class", 6, 28),
        ("OrderService", "OrderService.OrderService", "method", 10, 12),
        ("place", "OrderService.place", "method", 14, 19),
        ("Listener", "OrderService.Listener", "interface", 21, 23),
        ("onOrder", "OrderService.Listener.onOrder", "method", 22, 22),
        ("Status", "OrderService.Status", "enum", 25, 25),
        ("Line", "OrderService.Line", "class", 27, 27),
    ]
    assert _calls(parsed) == [
        ("ArrayList", 11, "OrderService.OrderService", None),
        ("validate", 16, "OrderService.place", None),
        ("add", 17, "OrderService.place", "orders"),
        ("log", 18, "OrderService.place", "Audit"),
    ]
    assert parsed.imports == (Import("java.util.List", (), 3), Import("com.example.util", ("*",), 4))


def test_javascript():
    parsed = parse_source("lib/a.js", JAVASCRIPT)
    assert _defs(parsed) == [
        ("load", "load", "function", 4, 6),
        ("save", "save", "function", 8, 10),
        ("fetch", "fetch", "function", 13, 13),
    ]
    assert _calls(parsed) == [
        ("require", 1, None, None),
        ("require", 2, None, None),
        ("readFile", 5, "load", None),
        ("join", 5, "load", "path"),
        ("put", 9, "save", "store"),
        ("request", 13, "fetch", None),
    ]
    assert parsed.imports == (Import("path", ("path",), 1), Import("./io", ("readFile",), 2))


def test_typescript():
    parsed = parse_source("src/a.ts", TYPESCRIPT)
    assert _defs(parsed) == [
        ("Props", "Props", "interface", 7, 9),
        ("Mode", "Mode", "type", 11, 11),
        ("Level", "Level", "enum", 13, 13),
        ("render", "render", "function", 15, 17),
        ("handler", "handler", "function", 19, 21),
        ("Widget", "Widget", "class", 23, 32),
        ("onClick", "Widget.onClick", "method", 25, 27),
        ("render", "Widget.render", "method", 29, 31),
    ]
    assert _calls(parsed) == [
        ("require", 5, None, None),
        ("format", 16, "render", "util"),
        ("process", 20, "handler", None),
        ("setState", 26, "Widget.onClick", "this"),
        ("View", 30, "Widget.render", None),
    ]
    assert parsed.imports == (
        Import("react", ("React", "useState"), 1),
        Import("./util", ("util",), 2),
        Import("../config.js", ("Config",), 3),
        Import("./format", ("format",), 4),
        Import("fs", ("fs",), 5),
    )


def test_tsx():
    parsed = parse_source("src/App.tsx", TSX)
    assert parsed.lang == "tsx"
    assert _defs(parsed) == [("App", "App", "function", 3, 6), ("onClick", "App.onClick", "function", 4, 4)]
    assert _calls(parsed) == [("track", 4, "App.onClick", None), ("format", 5, "App", None)]
    assert parsed.imports == (Import("./Button", ("Button",), 1),)


def test_rust():
    parsed = parse_source("src/cache.rs", RUST)
    assert _defs(parsed) == [
        ("Cache", "Cache", "struct", 5, 7),
        ("Event", "Event", "enum", 9, 12),
        ("Evict", "Evict", "trait", 14, 16),
        ("evict", "Evict.evict", "method", 15, 15),
        ("Cache", "Cache", "impl", 18, 27),
        ("new", "Cache.new", "method", 19, 21),
        ("touch", "Cache.touch", "method", 23, 26),
        ("log_event", "log_event", "macro", 29, 31),
        ("tests", "tests", "module", 33, 35),
        ("helper", "tests.helper", "function", 34, 34),
    ]
    assert _calls(parsed) == [
        ("new", 20, "Cache.new", "HashMap"),
        ("clear", 24, "Cache.touch", "self.map"),
        ("log_event", 25, "Cache.touch", None),
    ]
    assert parsed.imports == (
        Import("std::collections::HashMap", (), 1),
        Import("crate::store", ("self", "Store"), 2),
        Import("super::config", ("*",), 3),
    )


@pytest.mark.parametrize("path", sorted(SAMPLES))
def test_definitions_only_mode(path):
    full = parse_source(path, SAMPLES[path])
    bare = parse_source("other/" + path, SAMPLES[path], with_references=False)
    assert bare.definitions == full.definitions
    assert bare.references == () and bare.imports == ()


@pytest.mark.parametrize("path", sorted(SAMPLES))
def test_json_round_trip(path):
    parsed = parse_source(path, SAMPLES[path])
    text = parsed.to_json()
    assert ParsedFile.from_json(text) == parsed
    assert text == json.dumps(json.loads(text), separators=(",", ":"), ensure_ascii=False)
    assert "qualname" not in text


def test_json_round_trip_keeps_odd_values():
    parsed = ParsedFile("c", (Definition("f\ufffd", "f\ufffd", "function", 1, 2),), (), ())
    assert ParsedFile.from_json(parsed.to_json()) == parsed


_GARBAGE = [
    b"",
    b"\x00\x01\x02\xff\xfe" * 50,
    bytes(random.Random(7).randrange(256) for _ in range(4000)),
    b"def f(:\n  class {{{{ \n\tint main( { ] ) }\nfn impl<<< use ::: #include <<\n" * 20,
    "def caf\u00e9():\n    return \u00e9t\u00e9()\n".encode("latin-1"),
    b"}" * 3000 + b"{" * 3000,
]


@pytest.mark.parametrize("lang_path", sorted(SAMPLES))
@pytest.mark.parametrize("index", range(len(_GARBAGE)))
def test_garbage_does_not_raise(lang_path, index):
    parsed = parse_source(lang_path, _GARBAGE[index])
    assert isinstance(parsed, ParsedFile)
    ParsedFile.from_json(parsed.to_json())


@pytest.mark.parametrize("path", sorted(SAMPLES))
def test_truncated_and_corrupted_sources_do_not_raise(path):
    data = SAMPLES[path]
    rng = random.Random(path)
    for cut in range(0, len(data), max(1, len(data) // 15)):
        parse_source(path, data[:cut])
        corrupted = bytearray(data)
        for _ in range(5):
            corrupted[rng.randrange(len(corrupted))] = rng.choice(b"{}()\xff\xc3;:\n\"'")
        parse_source(path, bytes(corrupted))


def test_non_utf8_bytes_keep_lines_and_names():
    data = b'/* caf\xe9 */\nstatic const char *s = "\xff\xfe";\nint fetch(void)\n{\n\treturn g("\xe9");\n}\n'
    parsed = parse_source("latin1.c", data)
    assert _defs(parsed) == [("fetch", "fetch", "function", 3, 6)]
    assert _calls(parsed) == [("g", 5, "fetch", None)]


def test_utf8_names():
    parsed = parse_source("u.py", "def caf\u00e9():\n    return \u00e9t\u00e9()\n".encode())
    assert _defs(parsed) == [("caf\u00e9", "caf\u00e9", "function", 1, 2)]
    assert _calls(parsed) == [("\u00e9t\u00e9", 2, "caf\u00e9", None)]


@pytest.mark.parametrize("path", sorted(SAMPLES))
def test_successive_versions_parse_like_fresh_files(path):
    # parse_source re-uses the previous tree of the same path; the result must not depend on it.
    rng = random.Random(path)
    lines = SAMPLES[path].splitlines(keepends=True)
    for _ in range(12):
        i = rng.randrange(len(lines))
        action = rng.choice(("insert", "delete", "rename"))
        if action == "insert":
            lines.insert(i, lines[rng.randrange(len(lines))])
        elif action == "delete" and len(lines) > 1:
            del lines[i]
        else:
            lines[i] = lines[i].replace(b"e", b"ee", 1)
        data = b"".join(lines)
        assert parse_source(path, data) == parse_source(f"fresh/{rng.random()}/{path}", data)
    assert parse_source(path, SAMPLES[path]) == parse_source(f"fresh/{path}", SAMPLES[path])


# --- definitions_touching ---------------------------------------------------------------------

TOUCHING = _src('''
    import os


    class Store:
        """Keeps things."""

        def get(self, key):
            return self.data[key]

        def put(self, key, value):
            self.data[key] = value

        limit = 10


    def helper():
        pass
''')


@pytest.fixture
def store_defs():
    parsed = parse_source("store.py", TOUCHING)
    assert _defs(parsed) == [
        ("Store", "Store", "class", 4, 13),
        ("get", "Store.get", "method", 7, 8),
        ("put", "Store.put", "method", 10, 11),
        ("helper", "helper", "function", 16, 17),
    ]
    return parsed.definitions


def _names(defs):
    return [d.qualname for d in defs]


@pytest.mark.parametrize(("ranges", "expected"), [
    ([(8, 1)], ["Store.get"]),  # inside a method: not also its class
    ([(7, 2), (11, 1)], ["Store.get", "Store.put"]),
    ([(5, 3)], ["Store", "Store.get"]),  # class lines outside any method, and a method
    ([(13, 1)], ["Store"]),
    ([(9, 1)], ["Store"]),  # the blank line between methods belongs to the class
    ([(1, 3)], []),  # file level only
    ([(12, 6)], ["Store", "helper"]),
    ([(100, 5)], []),
    ([(11, 1), (8, 1), (7, 2)], ["Store.get", "Store.put"]),  # file order, no duplicates
    # count 0: between line start and start + 1
    ([(8, 0)], ["Store.get"]),
    ([(2, 0)], []),
    ([(3, 0)], ["Store"]),  # nothing holds line 3; line 4 is in the class
    ([(0, 0)], []),
    ([(15, 0)], ["helper"]),
])
def test_definitions_touching(store_defs, ranges, expected):
    assert _names(definitions_touching(store_defs, ranges)) == expected


def test_definitions_touching_in_any_order_and_with_equal_ranges():
    # Of two definitions on the same lines the later one is inner, as parse_source lists them:
    # typedef struct node {...} node_t; gives node_t, then node.
    typedef = Definition("node_t", "node_t", "type", 1, 10)
    struct = Definition("node", "node", "struct", 1, 10)
    later = Definition("h", "h", "function", 12, 14)
    assert definitions_touching([later, typedef, struct], [(13, 1), (2, 0), (1, 1)]) == [struct, later]
    assert definitions_touching([], [(1, 5)]) == []
