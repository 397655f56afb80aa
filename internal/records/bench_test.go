package records

import (
	"bytes"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/in-msgraph/in_msgraph/internal/graphsim"
)

// page builds a Graph page of n simulator sign-ins.
func page(n int) []byte {
	rng := rand.New(rand.NewPCG(1, 2))
	var b bytes.Buffer
	b.WriteString(`{"@odata.context":"https://graph.microsoft.com/v1.0/$metadata#auditLogs/signIns","@odata.nextLink":"https://graph.microsoft.com/v1.0/auditLogs/signIns?$top=1000&$skiptoken=abc","value":[`)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(graphsim.SignIn(rng, graphsim.NewID(rng), t0.Add(time.Duration(i)*time.Second)))
	}
	b.WriteString("]}")
	return b.Bytes()
}

func BenchmarkDecodePage(b *testing.B) {
	body := page(1000)
	d := Decoder{TimeField: "createdDateTime"}
	var p Page
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if err := d.DecodePage(body, &p); err != nil || len(p.Records) != 1000 {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*1000), "ns/record")
}
