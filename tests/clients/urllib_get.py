"""GET a URL with Python's urllib, configured only by the environment (HTTPS_PROXY,
SSL_CERT_FILE). Prints the status and the body."""
import sys
import urllib.request

with urllib.request.urlopen(sys.argv[1], timeout=20) as response:
    print(response.status)
    print(response.read().decode())
