package bom

// Checksum is the CRC a Bom records for a file: the POSIX cksum algorithm
// (CRC-32 polynomial 0x04C11DB7, most significant bit first, over the data
// followed by its length in as few little-endian bytes as needed, then
// inverted), which is what Apple's mkbom stores and lsbom prints. It is not
// the zlib CRC-32 of hash/crc32.
func Checksum(data []byte) uint32 {
	var crc uint32
	for _, b := range data {
		crc = cksumTable[byte(crc>>24)^b] ^ crc<<8
	}
	for n := uint64(len(data)); n > 0; n >>= 8 {
		crc = cksumTable[byte(crc>>24)^byte(n)] ^ crc<<8
	}
	return ^crc
}

var cksumTable = func() (t [256]uint32) {
	const poly = 0x04C11DB7
	for i := range t {
		c := uint32(i) << 24
		for range 8 {
			if c&0x80000000 != 0 {
				c = c<<1 ^ poly
			} else {
				c <<= 1
			}
		}
		t[i] = c
	}
	return t
}()
