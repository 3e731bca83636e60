// Never compiled: tools/layering_probe/BUILD's targets must fail analysis.
