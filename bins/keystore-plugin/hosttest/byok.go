package main

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"encoding/pem"
	"errors"
	"strings"
)

// What a BYOK customer does locally: wrap key material for Transit's
// wrapping key (CKM_RSA_AES_KEY_WRAP with SHA-256), and, for the test's
// proof, open a Transit AES-GCM ciphertext with the material it imported.
type byokRequest struct {
	PublicKey   string `json:"publicKey"`
	KeyMaterial string `json:"keyMaterial"` // base64
	Ciphertext  string `json:"ciphertext"`  // vault:vN:...
}

func byokWrap(raw json.RawMessage) answer {
	var req byokRequest
	if err := json.Unmarshal(raw, &req); err != nil {
		return answer{Code: "HostError", Message: err.Error()}
	}
	block, _ := pem.Decode([]byte(req.PublicKey))
	if block == nil {
		return answer{Code: "HostError", Message: "publicKey is not PEM"}
	}
	parsed, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return answer{Code: "HostError", Message: err.Error()}
	}
	pub, ok := parsed.(*rsa.PublicKey)
	if !ok {
		return answer{Code: "HostError", Message: "publicKey is not RSA"}
	}
	material, err := base64.StdEncoding.DecodeString(req.KeyMaterial)
	if err != nil {
		return answer{Code: "HostError", Message: err.Error()}
	}
	ephemeral := make([]byte, 32)
	if _, err := rand.Read(ephemeral); err != nil {
		return answer{Code: "HostError", Message: err.Error()}
	}
	wrappedKey, err := rsa.EncryptOAEP(sha256.New(), rand.Reader, pub, ephemeral, nil)
	if err != nil {
		return answer{Code: "HostError", Message: err.Error()}
	}
	wrappedMaterial, err := keyWrapPad(ephemeral, material)
	if err != nil {
		return answer{Code: "HostError", Message: err.Error()}
	}
	out, _ := json.Marshal(map[string]string{
		"encryptedKeyMaterial": base64.StdEncoding.EncodeToString(append(wrappedKey, wrappedMaterial...)),
	})
	return answer{Code: "OK", Response: out}
}

// keyWrapPad is AES key wrap with padding (RFC 5649).
func keyWrapPad(kek, plaintext []byte) ([]byte, error) {
	block, err := aes.NewCipher(kek)
	if err != nil {
		return nil, err
	}
	aiv := make([]byte, 8)
	copy(aiv, []byte{0xA6, 0x59, 0x59, 0xA6})
	binary.BigEndian.PutUint32(aiv[4:], uint32(len(plaintext)))
	padded := make([]byte, (len(plaintext)+7)/8*8)
	copy(padded, plaintext)
	n := len(padded) / 8
	if n == 1 {
		out := make([]byte, 16)
		block.Encrypt(out, append(aiv, padded...))
		return out, nil
	}
	a := aiv
	r := make([][]byte, n)
	for i := range r {
		r[i] = append([]byte(nil), padded[i*8:(i+1)*8]...)
	}
	buf := make([]byte, 16)
	for j := 0; j < 6; j++ {
		for i := 0; i < n; i++ {
			copy(buf, a)
			copy(buf[8:], r[i])
			block.Encrypt(buf, buf)
			t := uint64(n*j + i + 1)
			a = append([]byte(nil), buf[:8]...)
			binary.BigEndian.PutUint64(a, binary.BigEndian.Uint64(a)^t)
			r[i] = append([]byte(nil), buf[8:]...)
		}
	}
	out := append([]byte(nil), a...)
	for _, part := range r {
		out = append(out, part...)
	}
	return out, nil
}

func localDecrypt(raw json.RawMessage) answer {
	var req byokRequest
	if err := json.Unmarshal(raw, &req); err != nil {
		return answer{Code: "HostError", Message: err.Error()}
	}
	key, err := base64.StdEncoding.DecodeString(req.KeyMaterial)
	if err != nil {
		return answer{Code: "HostError", Message: err.Error()}
	}
	parts := strings.SplitN(req.Ciphertext, ":", 3)
	if len(parts) != 3 {
		return answer{Code: "HostError", Message: "not a vault:vN: ciphertext"}
	}
	payload, err := base64.StdEncoding.DecodeString(parts[2])
	if err != nil {
		return answer{Code: "HostError", Message: err.Error()}
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return answer{Code: "HostError", Message: err.Error()}
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return answer{Code: "HostError", Message: err.Error()}
	}
	if len(payload) < gcm.NonceSize() {
		return answer{Code: "HostError", Message: errors.New("payload too short").Error()}
	}
	plain, err := gcm.Open(nil, payload[:gcm.NonceSize()], payload[gcm.NonceSize():], nil)
	if err != nil {
		return answer{Code: "HostError", Message: err.Error()}
	}
	out, _ := json.Marshal(map[string]string{"plaintext": base64.StdEncoding.EncodeToString(plain)})
	return answer{Code: "OK", Response: out}
}
