package propagation

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/raceway-dev/raceway/sdks/go/vclock"
)

// PROPAGATION.md §3.1: JSON payloads of at most 512 bytes travel as a zstd frame with one stored Raw_Block.

// libDecode decodes with a plain klauspost/compress decoder (not the SDK's bounded one): an independent check.
func libDecode(t *testing.T, frame []byte) []byte {
	t.Helper()
	d, err := zstd.NewReader(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	out, err := d.DecodeAll(frame, nil)
	if err != nil {
		t.Fatalf("zstd decode: %v", err)
	}
	return out
}

func payloadN(components int, service, instance string) *ClockPayload {
	p := samplePayload()
	p.Service, p.Instance = service, instance
	p.Clock = nil
	for i := 0; i < components; i++ {
		p.Clock = append(p.Clock, vclock.Entry{Key: fmt.Sprintf("service-%03d#instance-%d", i, i), Counter: uint64(i + 1)})
	}
	return p
}

func frameOf(t *testing.T, h string) []byte {
	t.Helper()
	if !strings.HasPrefix(h, "v1;") {
		t.Fatalf("header %.20q", h)
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(h[3:])
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func roundTrips(t *testing.T, h string, p *ClockPayload) {
	t.Helper()
	back, kind := DecodeClock(h)
	if kind != "" {
		t.Fatalf("decode(encode) failed: %s", kind)
	}
	if !reflect.DeepEqual(back.Canonical(), p.Canonical()) {
		t.Fatalf("roundtrip\n got %v\nwant %v", back.Canonical(), p.Canonical())
	}
}

func TestStoreUncompressedUpTo(t *testing.T) {
	if StoreUncompressedUpTo != 512 {
		t.Fatalf("StoreUncompressedUpTo = %d, the spec and the Rust SDK say 512", StoreUncompressedUpTo)
	}
}

func TestStoredFrameDecodedByZstdLibrary(t *testing.T) {
	for _, n := range []int{1, 255, 256, 257, 512} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			raw := make([]byte, n)
			for i := range raw {
				raw[i] = byte(0x20 + (i*7)%95)
			}
			frame := AppendStoredZstdFrame([]byte("prefix"), raw)
			if !bytes.HasPrefix(frame, []byte("prefix")) {
				t.Fatal("dst prefix lost")
			}
			frame = frame[len("prefix"):]
			var head []byte
			if n < 256 {
				head = []byte{0x28, 0xB5, 0x2F, 0xFD, 0x20, byte(n)}
			} else {
				head = binary.LittleEndian.AppendUint16([]byte{0x28, 0xB5, 0x2F, 0xFD, 0x60}, uint16(n-256))
			}
			bh := uint32(n)<<3 | 1
			want := append(append(head, byte(bh), byte(bh>>8), byte(bh>>16)), raw...)
			if !bytes.Equal(frame, want) {
				t.Fatalf("frame\n got % x\nwant % x", frame[:12], want[:12])
			}
			var h zstd.Header
			if err := h.Decode(frame); err != nil || !h.HasFCS || h.FrameContentSize != uint64(n) || !h.SingleSegment {
				t.Fatalf("header %+v, err %v", h, err)
			}
			if got := libDecode(t, frame); !bytes.Equal(got, raw) {
				t.Fatalf("decoded %d bytes, want %d", len(got), n)
			}
		})
	}
}

func TestAppendStoredZstdFramePanicsOutOfRange(t *testing.T) {
	for _, n := range []int{0, 256 + 65536} {
		func() {
			defer func() {
				if recover() == nil {
					t.Fatalf("size %d: no panic", n)
				}
			}()
			AppendStoredZstdFrame(nil, make([]byte, n))
		}()
	}
}

func TestEncodeClockStoresSmallPayloads(t *testing.T) {
	for _, components := range []int{1, 2, 4} {
		p := payloadN(components, "service-000", "instance-0")
		raw := p.appendJSON(nil)
		if len(raw) > StoreUncompressedUpTo {
			t.Fatalf("%d components: %d bytes of JSON", components, len(raw))
		}
		h, err := EncodeClock(p)
		if err != nil {
			t.Fatal(err)
		}
		frame := frameOf(t, h)
		over := 9
		if len(raw) >= 256 {
			over = 10
		}
		if len(frame) != len(raw)+over || !bytes.Equal(frame[len(frame)-len(raw):], raw) {
			t.Fatalf("%d components: frame of %d bytes does not end with the %d JSON bytes", components, len(frame), len(raw))
		}
		if !bytes.Equal(libDecode(t, frame), raw) {
			t.Fatal("zstd library decodes to other bytes")
		}
		roundTrips(t, h, p)
	}
}

func TestEncodeClockCompressesLargePayloads(t *testing.T) {
	for _, components := range []int{16, 64} {
		p := payloadN(components, "service-000", "instance-0")
		raw := p.appendJSON(nil)
		h, err := EncodeClock(p)
		if err != nil {
			t.Fatal(err)
		}
		frame := frameOf(t, h)
		if len(raw) <= StoreUncompressedUpTo || !bytes.HasPrefix(frame, zstdMagic) || len(frame) >= len(raw) {
			t.Fatalf("%d components: %d JSON bytes, frame %d bytes: not compressed", components, len(raw), len(frame))
		}
		if !bytes.Equal(libDecode(t, frame), raw) {
			t.Fatal("zstd library decodes to other bytes")
		}
		roundTrips(t, h, p)
	}
}

func TestEncodeClockThresholdIsInclusive(t *testing.T) {
	for _, target := range []int{512, 513} {
		// Grow the instance name (then the service name) one JSON byte per character to exactly target bytes.
		service, instance := "service-000", "instance-0"
		for len(payloadN(1, service, instance).appendJSON(nil)) < target && len(instance) < maxNameBytes {
			instance += "x"
		}
		for len(payloadN(1, service, instance).appendJSON(nil)) < target {
			service += "s"
		}
		p := payloadN(1, service, instance)
		raw := p.appendJSON(nil)
		if len(raw) != target {
			t.Fatalf("built %d bytes, want %d", len(raw), target)
		}
		h, err := EncodeClock(p)
		if err != nil {
			t.Fatal(err)
		}
		frame := frameOf(t, h)
		if target <= StoreUncompressedUpTo {
			if !bytes.Equal(frame[4:7], []byte{0x60, 0x00, 0x01}) || !bytes.Equal(frame[len(frame)-len(raw):], raw) {
				t.Fatalf("%d bytes not stored: % x", target, frame[:8])
			}
		} else if len(frame) >= len(raw) {
			t.Fatalf("%d bytes not compressed (frame %d)", target, len(frame))
		}
		if !bytes.Equal(libDecode(t, frame), raw) {
			t.Fatal("zstd library decodes to other bytes")
		}
		roundTrips(t, h, p)
	}
}
