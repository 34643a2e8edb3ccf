// Package secrets encrypts workspace secrets at rest with AES-256-GCM,
// as the host keeps them: the plaintext exists only in the request that
// stores it and in the worker's env hook, for the length of one CP call.
package secrets

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
)

// Version is the encryption_version this Box writes. A key rotation adds
// a version and keeps the old key for reading.
const Version = 1

// ErrKey: the key is missing or not 32 bytes of base64. The message never
// quotes the value.
var ErrKey = errors.New("secrets key must be 32 bytes, base64-encoded")

// ErrDecrypt: a value did not decrypt (wrong key, tampered, or moved to
// another workspace or key). It names neither the value nor the key.
var ErrDecrypt = errors.New("secret did not decrypt")

// Box seals and opens secret values.
type Box struct{ aead cipher.AEAD }

// NewBox builds a Box from a base64 key (SECRETS_KEY).
func NewBox(b64 string) (*Box, error) {
	key, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(key) != 32 {
		return nil, ErrKey
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("secrets: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("secrets: %w", err)
	}
	return &Box{aead: aead}, nil
}

// NewKey returns a fresh random key, base64-encoded (for tests and
// `make example`).
func NewKey() string {
	key := make([]byte, 32)
	_, _ = rand.Read(key) // crypto/rand.Read never fails (Go 1.24+)
	return base64.StdEncoding.EncodeToString(key)
}

// Seal encrypts value for one workspace's key. The workspace id and key
// are bound in as associated data, so a ciphertext copied onto another
// row (another workspace, or another key of the same one) fails to open
// instead of handing one tenant's secret to another.
func (b *Box) Seal(workspaceID, key, value string) []byte {
	nonce := make([]byte, b.aead.NonceSize())
	_, _ = rand.Read(nonce)
	return b.aead.Seal(nonce, nonce, []byte(value), aad(workspaceID, key))
}

// Open decrypts a value Seal wrote for this workspace and key.
func (b *Box) Open(workspaceID, key string, sealed []byte, version int) (string, error) {
	n := b.aead.NonceSize()
	if version != Version || len(sealed) < n {
		return "", ErrDecrypt
	}
	plain, err := b.aead.Open(nil, sealed[:n], sealed[n:], aad(workspaceID, key))
	if err != nil {
		return "", ErrDecrypt
	}
	return string(plain), nil
}

func aad(workspaceID, key string) []byte {
	return []byte(fmt.Sprintf("%d:%s:%s", len(workspaceID), workspaceID, key))
}
