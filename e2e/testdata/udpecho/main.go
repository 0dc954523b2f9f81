// Command udpecho answers each UDP datagram with the same datagram. The
// end-to-end tests build it into their container image: busybox's nc has
// no UDP mode.
package main

import (
	"flag"
	"log"
	"net"
)

func main() {
	addr := flag.String("l", ":53", "address to listen on")
	flag.Parse()
	c, err := net.ListenPacket("udp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	buf := make([]byte, 65536)
	for {
		n, from, err := c.ReadFrom(buf)
		if err != nil {
			log.Fatal(err)
		}
		c.WriteTo(buf[:n], from)
	}
}
