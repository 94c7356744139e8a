package shield

import (
	"os"

	"github.com/carverauto/fortress/internal/pins"
)

// programPin is the name of Shield's pinned XDP program. Every other name
// of Shield's pins is in this package too: tableMaps (the maps), linkPin
// (one link per interface) and pinReplace's temporaries.
const programPin = "xdp_shield"

// Pinned reports whether a Shield program is pinned under root: an earlier
// run's Shield, which Open adopts.
func Pinned(root pins.Root) bool {
	_, err := os.Stat(root.Path(pins.Shield, programPin))
	return err == nil
}

// PinnedObjects lists the pin paths of Shield's maps and links under root
// (not its program, not a pin being replaced): what only the agent may
// update or detach, for a layer that guards them.
func PinnedObjects(root pins.Root) (maps, links []string, err error) {
	ents, err := os.ReadDir(root.Dir(pins.Shield))
	if err != nil {
		return nil, nil, err
	}
	for _, e := range ents {
		path := root.Path(pins.Shield, e.Name())
		if _, ok := ifaceOfPin(e.Name()); ok {
			links = append(links, path)
			continue
		}
		for _, m := range tableMaps {
			if e.Name() == m {
				maps = append(maps, path)
			}
		}
	}
	return maps, links, nil
}
