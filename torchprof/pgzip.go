package torchprof

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"io"
	"runtime"
	"sync"

	"github.com/klauspost/compress/flate"
)

// parallelGzip writes one gzip member whose deflate stream is compressed in independent
// blocks on every core: each block but the last ends with a sync flush, so the blocks
// concatenate into one valid stream that any gzip reader (zcat, Python, Perfetto)
// accepts. Each block starts with an empty window, which costs a little ratio and buys
// near-linear speed-up. Memory: at most 2×workers blocks in flight.
type parallelGzip struct {
	w       io.Writer
	level   int
	buf     []byte
	crc     uint32
	size    uint32
	queue   chan chan []byte // results in write order
	done    chan error
	pending sync.Pool
	err     error
	closed  bool
}

const gzipBlockSize = 1 << 20

func newParallelGzip(w io.Writer, level int) (*parallelGzip, error) {
	// Header: magic, deflate, no flags, no mtime, no extra flags, unknown OS.
	if _, err := w.Write([]byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255}); err != nil {
		return nil, err
	}
	z := &parallelGzip{
		w:     w,
		level: level,
		buf:   make([]byte, 0, gzipBlockSize),
		queue: make(chan chan []byte, 2*runtime.GOMAXPROCS(0)),
		done:  make(chan error, 1),
	}
	go z.drain()
	return z, nil
}

// drain writes compressed blocks in order; after a write error it keeps receiving so
// the producer never blocks.
func (z *parallelGzip) drain() {
	var err error
	for res := range z.queue {
		b := <-res
		if err == nil {
			_, err = z.w.Write(b)
		}
		z.pending.Put(b[:0])
	}
	z.done <- err
}

func (z *parallelGzip) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		k := min(len(p), gzipBlockSize-len(z.buf))
		z.buf = append(z.buf, p[:k]...)
		p = p[k:]
		if len(z.buf) == gzipBlockSize {
			z.flushBlock(false)
		}
	}
	return n, nil
}

func (z *parallelGzip) flushBlock(last bool) {
	block := z.buf
	z.crc = crc32.Update(z.crc, crc32.IEEETable, block)
	z.size += uint32(len(block))
	z.buf = make([]byte, 0, gzipBlockSize)
	res := make(chan []byte, 1)
	z.queue <- res // bounds the blocks in flight
	out, _ := z.pending.Get().([]byte)
	go func() {
		bb := bytes.NewBuffer(out)
		fw := flateWriters.get(bb, z.level)
		fw.Write(block) // writes to a bytes.Buffer cannot fail
		if last {
			fw.Close()
		} else {
			fw.Flush()
		}
		flateWriters.put(fw, z.level)
		res <- bb.Bytes()
	}()
}

// Close compresses what is left, writes the trailer and waits for every block.
func (z *parallelGzip) Close() error {
	if z.closed {
		return z.err
	}
	z.closed = true
	z.flushBlock(true)
	close(z.queue)
	z.err = <-z.done
	if z.err != nil {
		return z.err
	}
	var tr [8]byte
	binary.LittleEndian.PutUint32(tr[:4], z.crc)
	binary.LittleEndian.PutUint32(tr[4:], z.size)
	_, z.err = z.w.Write(tr[:])
	return z.err
}

// flateWriters reuses compressors: allocating one costs about 1 MB.
var flateWriters writerPool

type writerPool struct{ p sync.Map } // level -> *sync.Pool

func (wp *writerPool) get(w io.Writer, level int) *flate.Writer {
	pi, _ := wp.p.LoadOrStore(level, &sync.Pool{})
	if fw, ok := pi.(*sync.Pool).Get().(*flate.Writer); ok {
		fw.Reset(w)
		return fw
	}
	fw, err := flate.NewWriter(w, level)
	if err != nil {
		fw, _ = flate.NewWriter(w, flate.BestSpeed)
	}
	return fw
}

func (wp *writerPool) put(fw *flate.Writer, level int) {
	pi, _ := wp.p.Load(level)
	pi.(*sync.Pool).Put(fw)
}
