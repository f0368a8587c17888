package ollama

import (
	"bufio"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
)

func TestReadLine(t *testing.T) {
	long := strings.Repeat("x", 100)
	tests := []struct {
		name    string
		in      string
		want    []string
		wantErr error
	}{
		{"Lines", "{\"a\":1}\n{\"b\":2}\n", []string{`{"a":1}`, `{"b":2}`}, io.EOF},
		{"BlankLinesSkipped", "\n\n{\"a\":1}\r\n\n", []string{`{"a":1}`}, io.EOF},
		{"NoFinalNewline", "{\"a\":1}\n{\"b\"", []string{`{"a":1}`, `{"b"`}, io.EOF},
		{"LineLongerThanTheBuffer", long + "\nshort\n", []string{long, "short"}, io.EOF},
		{"TooLong", strings.Repeat("y", maxLine+1) + "\n", nil, errLineTooLong},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := bufio.NewReaderSize(strings.NewReader(tt.in), 16)
			var got []string
			for {
				line, err := readLine(r)
				if len(line) > 0 {
					got = append(got, string(line))
				}
				if err != nil {
					if !errors.Is(err, tt.wantErr) {
						t.Fatalf("err = %v, want %v", err, tt.wantErr)
					}
					break
				}
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("lines = %q, want %q", got, tt.want)
			}
		})
	}
}
