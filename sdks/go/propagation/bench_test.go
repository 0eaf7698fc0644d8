package propagation

import "testing"

func BenchmarkEncodeClock(b *testing.B) {
	p := samplePayload()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := EncodeClock(p); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeClock(b *testing.B) {
	h, _ := EncodeClock(samplePayload())
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, k := DecodeClock(h); k != "" {
			b.Fatal(k)
		}
	}
}
