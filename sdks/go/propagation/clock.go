package propagation

import (
	"bytes"
	"encoding/base64"
	"errors"
	"strconv"
	"sync"
	"unicode/utf8"

	"github.com/klauspost/compress/zstd"

	"github.com/raceway-dev/raceway/sdks/go/vclock"
)

// ClockError is an error kind of raceway-clock decoding (PROPAGATION.md §3.4).
type ClockError string

const (
	ClockTooLong            ClockError = "too_long"
	ClockUnsupportedVersion ClockError = "unsupported_version"
	ClockMalformed          ClockError = "malformed"
	ClockTooLarge           ClockError = "too_large"
	ClockTooManyComponents  ClockError = "too_many_components"
)

func (e ClockError) Error() string { return "raceway-clock: " + string(e) }

// Bounds of raceway-clock (PROPAGATION.md §3.3).
const (
	MaxClockHeaderBytes = 8192
	MaxClockJSONBytes   = 65536
	MaxClockComponents  = 256
	maxFlags            = 16
	maxFlagBytes        = 64
	maxNameBytes        = 256
	maxZstdWindow       = 8 << 20
)

// ClockPayload is the JSON payload of a raceway-clock header (PROPAGATION.md §3.2).
type ClockPayload struct {
	TraceID      TraceID
	SpanID       SpanID
	ParentSpanID SpanID // zero = none (null)
	Service      string
	Instance     string
	Clock        []vclock.Entry // canonical: sorted by key, unique keys
	Flags        []string
}

// HasParent reports whether ParentSpanID is set.
func (p *ClockPayload) HasParent() bool { return !p.ParentSpanID.IsZero() }

// Canonical returns the canonical JSON value of the payload as generic Go values
// (clock sorted by key, parent_span_id nil when absent, flags [] when absent).
func (p *ClockPayload) Canonical() map[string]any {
	clock := make([]any, 0, len(p.Clock))
	for _, e := range p.Clock {
		clock = append(clock, []any{e.Key, float64(e.Counter)})
	}
	flags := make([]any, 0, len(p.Flags))
	for _, f := range p.Flags {
		flags = append(flags, f)
	}
	var parent any
	if p.HasParent() {
		parent = p.ParentSpanID.String()
	}
	return map[string]any{
		"trace_id":       p.TraceID.UUID(),
		"span_id":        p.SpanID.String(),
		"parent_span_id": parent,
		"service":        p.Service,
		"instance":       p.Instance,
		"clock":          clock,
		"flags":          flags,
	}
}

// MarshalJSON writes the payload JSON (what goes into the zstd frame).
func (p *ClockPayload) MarshalJSON() ([]byte, error) { return p.appendJSON(nil), nil }

func (p *ClockPayload) appendJSON(b []byte) []byte {
	b = append(b, `{"trace_id":"`...)
	b = append(b, p.TraceID.UUID()...)
	b = append(b, `","span_id":"`...)
	b = append(b, p.SpanID.String()...)
	if p.HasParent() {
		b = append(b, `","parent_span_id":"`...)
		b = append(b, p.ParentSpanID.String()...)
		b = append(b, `","service":`...)
	} else {
		b = append(b, `","parent_span_id":null,"service":`...)
	}
	b = AppendJSONString(b, p.Service)
	b = append(b, `,"instance":`...)
	b = AppendJSONString(b, p.Instance)
	b = append(b, `,"clock":[`...)
	for i, e := range p.Clock {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '[')
		b = AppendJSONString(b, e.Key)
		b = append(b, ',')
		b = strconv.AppendUint(b, e.Counter, 10)
		b = append(b, ']')
	}
	b = append(b, `],"flags":[`...)
	for i, f := range p.Flags {
		if i > 0 {
			b = append(b, ',')
		}
		b = AppendJSONString(b, f)
	}
	return append(b, "]}"...)
}

// AppendJSONString appends s as a JSON string literal (invalid UTF-8 becomes U+FFFD).
func AppendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexdigits[c>>4], hexdigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i++
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

var (
	encoderOnce sync.Once
	encoder     *zstd.Encoder
	decoderOnce sync.Once
	decoder     *zstd.Decoder
	encPool     = sync.Pool{New: func() any { return &encScratch{json: make([]byte, 0, 1024), z: make([]byte, 0, 1024)} }}
	decPool     = sync.Pool{New: func() any { b := make([]byte, 0, MaxClockJSONBytes); return &b }}
)

func getEncoder() *zstd.Encoder {
	encoderOnce.Do(func() {
		encoder, _ = zstd.NewWriter(nil,
			zstd.WithEncoderLevel(zstd.SpeedFastest),
			zstd.WithNoEntropyCompression(true),
			zstd.WithEncoderConcurrency(1),
			zstd.WithZeroFrames(true),
			zstd.WithWindowSize(1<<16),
			zstd.WithEncoderCRC(false),
			zstd.WithSingleSegment(true))
	})
	return encoder
}

func getDecoder() *zstd.Decoder {
	decoderOnce.Do(func() {
		decoder, _ = zstd.NewReader(nil,
			zstd.WithDecoderConcurrency(0),
			zstd.WithDecoderMaxMemory(MaxClockJSONBytes),
			zstd.WithDecoderMaxWindow(maxZstdWindow),
			zstd.WithDecodeAllCapLimit(true),
			zstd.WithDecoderLowmem(true))
	})
	return decoder
}

// StoreUncompressedUpTo is the largest raceway-clock JSON payload, in bytes (about 8 clock
// components), that EncodeClock sends as a zstd frame holding one stored Raw_Block instead of
// compressing it (PROPAGATION.md §3.1): at that size zstd saves < 100 bytes while its setup costs
// more than the rest of a hop. Larger payloads are compressed. Same value as the Rust SDK's
// raceway::clock_header::STORE_UNCOMPRESSED_UP_TO.
const StoreUncompressedUpTo = 512

// AppendStoredZstdFrame appends to dst a single-segment zstd frame (RFC 8878 §3.1.1) holding raw
// in one uncompressed Raw_Block, and returns the extended slice: magic 28 B5 2F FD; a
// Frame_Header_Descriptor with Single_Segment_flag and Frame_Content_Size on 1 byte below 256
// bytes (0x20, n), else on 2 bytes as n-256 little-endian (0x60); the 3-byte little-endian
// Block_Header (n<<3)|1 (Last_Block, Block_Type Raw); the bytes. Every zstd decoder reads it.
// It panics unless 0 < len(raw) < 256+65536.
func AppendStoredZstdFrame(dst, raw []byte) []byte {
	n := len(raw)
	if n == 0 || n >= 256+65536 {
		panic("propagation: stored zstd frame size out of range")
	}
	dst = append(dst, zstdMagic...)
	if n < 256 {
		dst = append(dst, 0x20, byte(n))
	} else {
		dst = append(dst, 0x60, byte(n-256), byte((n-256)>>8))
	}
	bh := uint32(n)<<3 | 1
	dst = append(dst, byte(bh), byte(bh>>8), byte(bh>>16))
	return append(dst, raw...)
}

// EncodeClock returns the raceway-clock header value "v1;" + base64url(zstd frame(JSON)): a
// stored frame (AppendStoredZstdFrame) for JSON of at most StoreUncompressedUpTo bytes, a
// compressed one above. It fails (ClockTooLong) when the result would exceed 8192 bytes, and with
// ClockMalformed when the payload breaks the field rules.
func EncodeClock(p *ClockPayload) (string, error) {
	if p.TraceID.IsZero() || p.SpanID.IsZero() || len(p.Service) == 0 || len(p.Service) > maxNameBytes ||
		len(p.Instance) == 0 || len(p.Instance) > maxNameBytes {
		return "", ClockMalformed
	}
	if len(p.Clock) > MaxClockComponents {
		return "", ClockTooManyComponents
	}
	sc := encPool.Get().(*encScratch)
	defer encPool.Put(sc)
	sc.json = p.appendJSON(sc.json[:0])
	if len(sc.json) > MaxClockJSONBytes {
		return "", ClockTooLarge
	}
	if len(sc.json) <= StoreUncompressedUpTo {
		sc.z = AppendStoredZstdFrame(sc.z[:0], sc.json)
	} else {
		sc.z = getEncoder().EncodeAll(sc.json, sc.z[:0])
	}
	z := sc.z
	n := 3 + base64.RawURLEncoding.EncodedLen(len(z))
	if n > MaxClockHeaderBytes {
		return "", ClockTooLong
	}
	out := make([]byte, n)
	copy(out, "v1;")
	base64.RawURLEncoding.Encode(out[3:], z)
	return string(out), nil
}

func isB64URL(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}

type encScratch struct{ json, z []byte }

var strictB64 = base64.RawURLEncoding.Strict()

var zstdMagic = []byte{0x28, 0xB5, 0x2F, 0xFD}

// DecodeClock decodes one raceway-clock header value into its canonical payload.
func DecodeClock(header string) (*ClockPayload, ClockError) {
	v := TrimOWS(header)
	if len(v) > MaxClockHeaderBytes {
		return nil, ClockTooLong
	}
	// version token: "v" + 1-3 digits + ";"
	if len(v) < 3 || v[0] != 'v' {
		return nil, ClockMalformed
	}
	i := 1
	for i < len(v) && i <= 4 && v[i] >= '0' && v[i] <= '9' {
		i++
	}
	digits := i - 1
	if digits < 1 || digits > 3 || i >= len(v) || v[i] != ';' {
		return nil, ClockMalformed
	}
	if v[1:i] != "1" {
		return nil, ClockUnsupportedVersion
	}
	enc := v[i+1:]
	if len(enc) == 0 {
		return nil, ClockMalformed
	}
	for j := 0; j < len(enc); j++ {
		if !isB64URL(enc[j]) {
			return nil, ClockMalformed
		}
	}
	raw, err := strictB64.DecodeString(enc)
	if err != nil {
		return nil, ClockMalformed
	}
	switch {
	case bytes.HasPrefix(raw, zstdMagic):
		// a frame that announces more than the bound is refused before any work
		var fh zstd.Header
		if err := fh.Decode(raw); err != nil {
			return nil, ClockMalformed
		}
		if fh.HasFCS && fh.FrameContentSize > MaxClockJSONBytes || fh.WindowSize > maxZstdWindow {
			return nil, ClockTooLarge
		}
		bp := decPool.Get().(*[]byte)
		defer decPool.Put(bp)
		out, err := getDecoder().DecodeAll(raw, (*bp)[:0])
		if err != nil {
			if errors.Is(err, zstd.ErrDecoderSizeExceeded) ||
				len(out) > MaxClockJSONBytes {
				return nil, ClockTooLarge
			}
			return nil, ClockMalformed
		}
		if len(out) > MaxClockJSONBytes {
			return nil, ClockTooLarge
		}
		return parsePayload(out)
	case len(raw) > 0 && raw[0] == '{':
		if len(raw) > MaxClockJSONBytes {
			return nil, ClockTooLarge
		}
		return parsePayload(raw)
	default:
		return nil, ClockMalformed
	}
}

func parsePayload(data []byte) (*ClockPayload, ClockError) {
	if !utf8.Valid(data) {
		return nil, ClockMalformed
	}
	w, ok := readPayload(data)
	if !ok {
		return nil, ClockMalformed
	}
	if w.tooManyComponents {
		return nil, ClockTooManyComponents
	}
	p := &ClockPayload{}
	if !w.hasTrace || !w.hasSpan || !w.hasClock {
		return nil, ClockMalformed
	}
	if p.TraceID, ok = ParseUUID(w.traceID); !ok || p.TraceID.IsZero() {
		return nil, ClockMalformed
	}
	if p.SpanID, ok = ParseSpanID(w.spanID); !ok {
		return nil, ClockMalformed
	}
	if w.hasParent {
		if p.ParentSpanID, ok = ParseSpanID(w.parentSpanID); !ok {
			return nil, ClockMalformed
		}
	}
	if !w.hasService || len(w.service) == 0 || len(w.service) > maxNameBytes ||
		!w.hasInst || len(w.instance) == 0 || len(w.instance) > maxNameBytes {
		return nil, ClockMalformed
	}
	p.Service, p.Instance = w.service, w.instance
	for _, e := range w.clock {
		if len(e.Key) == 0 || len(e.Key) > maxNameBytes {
			return nil, ClockMalformed
		}
	}
	p.Clock = vclock.SortEntries(w.clock)
	if len(w.flags) > maxFlags {
		return nil, ClockMalformed
	}
	for _, f := range w.flags {
		if len(f) == 0 || len(f) > maxFlagBytes {
			return nil, ClockMalformed
		}
	}
	p.Flags = w.flags
	if p.Flags == nil {
		p.Flags = []string{}
	}
	return p, ""
}
