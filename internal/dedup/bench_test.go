package dedup

import (
	"testing"
)

func BenchmarkAddHas(b *testing.B) {
	s := New()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		k := key(i)
		if !s.Has(k) {
			s.Add(k, int64(i)*1e6)
		}
		i++
	}
}
