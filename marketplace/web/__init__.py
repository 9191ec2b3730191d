"""The web app (`datadebit web serve`): server-rendered pages over the application layer,
a small JSON API, and plain ES modules for what only the browser may do (wallet actions,
decryption). The server is a convenience and never sees a key, a share or a plaintext.

    from marketplace.web.app import create_web_app
"""
