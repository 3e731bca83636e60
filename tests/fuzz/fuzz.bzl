"""libFuzzer targets built with Debian's clang, beside Bazel's gcc toolchain.

    tessera_fuzzer(
        name = "data_wire_fuzzer",
        srcs = ["data_wire_fuzzer.cc", "//ps/wire:data_wire.cc"],
        deps = ["//ps/wire:data_wire"],
        runs = 20000,
    )

gives
  :data_wire_fuzzer       the fuzzer (clang++ -fsanitize=fuzzer,address,
                          undefined), runnable with `bazel run`;
  :data_wire_fuzzer_test  an sh_test that runs it for `runs` inputs (fixed
                          seed) over the committed corpus corpus/<name>/.

`srcs` are compiled with clang, instrumented for coverage and sanitized: the
harness and the code under test. `deps` give headers and include paths, and
everything else the fuzzer links: their gcc-built archives (a member whose
code is also in `srcs` is never pulled in) and the system libraries of
//third_party.
"""

def _fuzzer_impl(ctx):
    cc_infos = [d[CcInfo] for d in ctx.attr.deps]
    headers = depset(transitive = [c.compilation_context.headers for c in cc_infos])
    include_sets = []
    for c in cc_infos:
        include_sets += [
            c.compilation_context.includes,
            c.compilation_context.quote_includes,
            c.compilation_context.system_includes,
        ]
    includes = depset(transitive = include_sets).to_list()

    archives = []
    link_flags = []
    for c in cc_infos:
        for linker_input in c.linking_context.linker_inputs.to_list():
            for flag in linker_input.user_link_flags:
                if flag not in link_flags:
                    link_flags.append(flag)
            for lib in linker_input.libraries:
                archive = lib.pic_static_library or lib.static_library
                if archive != None and archive not in archives:
                    archives.append(archive)

    sources = [f for f in ctx.files.srcs if f.path.endswith(".cc")]
    out = ctx.actions.declare_file(ctx.label.name)
    args = [
        "-std=c++17",
        "-O1",
        "-g1",
        "-w",
        "-fsanitize=fuzzer,address,undefined",
        # vptr checks need RTTI of the system libraries as clang sees it.
        "-fno-sanitize=vptr",
        "-fno-sanitize-recover=undefined",
        "-I.",
        "-I" + ctx.bin_dir.path,
    ]
    for inc in includes:
        args.append("-I" + inc)
    args += [s.path for s in sources]
    args += ["-o", out.path]
    args.append("-Wl,--start-group")
    args += [a.path for a in archives]
    args.append("-Wl,--end-group")
    args += link_flags
    args.append("-pthread")
    ctx.actions.run(
        executable = ctx.executable._clang,
        arguments = args,
        inputs = depset(ctx.files.srcs + archives, transitive = [headers]),
        outputs = [out],
        mnemonic = "ClangFuzzer",
        progress_message = "Building fuzzer %s with clang" % ctx.label,
        use_default_shell_env = True,
    )
    return [DefaultInfo(executable = out, files = depset([out]))]

_fuzzer = rule(
    implementation = _fuzzer_impl,
    executable = True,
    attrs = {
        "srcs": attr.label_list(allow_files = [".cc", ".h"]),
        "deps": attr.label_list(providers = [CcInfo]),
        "_clang": attr.label(
            default = "//tests/fuzz:clang",
            executable = True,
            cfg = "exec",
        ),
    },
)

def tessera_fuzzer(name, srcs, deps, runs, max_len = 4096, size = "medium"):
    _fuzzer(
        name = name,
        srcs = srcs,
        deps = deps,
        testonly = True,
        tags = ["fuzz"],
    )
    native.sh_test(
        name = name + "_test",
        size = size,
        srcs = ["run_fuzzer.sh"],
        args = [
            "$(location :%s)" % name,
            "tests/fuzz/corpus/" + name,
            str(runs),
            str(max_len),
        ],
        data = [":" + name] + native.glob(["corpus/%s/**" % name]),
        tags = ["fuzz"],
    )
