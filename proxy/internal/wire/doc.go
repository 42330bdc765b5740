// Package wire holds what both ends of a relay-to-relay link agree on,
// the upstream link's and the downstream server's alike: the words of the
// compressed link (capa relay-zstd, its level option, the "zstd" word
// that ends +FULLRESYNC or +CONTINUE), the byte counters of compressed
// links, and the progress log of a long transfer.
package wire
