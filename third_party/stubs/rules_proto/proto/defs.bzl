"""Offline stand-in for @rules_proto//proto:defs.bzl: the native rules."""

proto_library = native.proto_library
proto_lang_toolchain = native.proto_lang_toolchain
