package demo

import (
	"encoding/json"
	"os"
)

// writeJSON writes v to path (0600) and returns path.
func writeJSON(path string, v any) (string, error) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return "", err
	}
	return path, os.WriteFile(path, append(b, '\n'), 0o600)
}
