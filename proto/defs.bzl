"""tessera_proto: C++ (and gRPC) code for one .proto, from Debian's protoc.

    tessera_proto(name = "tensor", src = "tessera/v1/tensor.proto")
    tessera_proto(name = "ps", src = "tessera/v1/ps.proto", deps = [":tensor"], grpc = True)

gives cc_library targets ":tensor_cc" and ":ps_cc" (include "tessera/v1/ps.pb.h",
"tessera/v1/ps.grpc.pb.h"). Imports are relative to proto/, e.g.
`import "tessera/v1/tensor.proto";`.
"""

def tessera_proto(name, src, deps = [], grpc = False, visibility = None):
    base = src[:-len(".proto")]
    outs = [base + ".pb.h", base + ".pb.cc"]
    if grpc:
        outs += [base + ".grpc.pb.h", base + ".grpc.pb.cc"]

    # The .proto files this one imports, transitively, for protoc's -I.
    native.filegroup(
        name = name + "_proto_srcs",
        srcs = [src] + [d + "_proto_srcs" for d in deps],
        visibility = visibility,
    )

    grpc_cmd = ""
    if grpc:
        grpc_cmd = (" --grpc_out=$(GENDIR)/proto" +
                    " --plugin=protoc-gen-grpc=/usr/bin/grpc_cpp_plugin")
    native.genrule(
        name = name + "_gen",
        srcs = [":" + name + "_proto_srcs"],
        outs = outs,
        cmd = ("/usr/bin/protoc -Iproto --cpp_out=$(GENDIR)/proto" + grpc_cmd +
               " proto/" + src),
    )
    native.cc_library(
        name = name + "_cc",
        srcs = [o for o in outs if o.endswith(".cc")],
        hdrs = [o for o in outs if o.endswith(".h")],
        includes = ["."],
        deps = [d + "_cc" for d in deps] + [
            "//third_party:protobuf",
        ] + (["//third_party:grpc"] if grpc else []),
        visibility = visibility,
    )
